"""The garbage collector paused for a block, and running again after it."""

from __future__ import annotations

import gc

import pytest

from defender_hub.collector import collector_paused


def test_the_collector_is_paused_for_the_block_and_runs_again_after_it_even_when_the_block_fails() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failed delivery")
    assert gc.isenabled()


def test_a_collector_already_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
