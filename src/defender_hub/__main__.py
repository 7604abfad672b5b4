"""Runs the CLI as `python -m defender_hub`."""

from defender_hub.cli import main

raise SystemExit(main())
