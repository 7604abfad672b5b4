"""defender-hub: AWS IoT Device Defender findings into AWS Security Hub."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("defender-hub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
