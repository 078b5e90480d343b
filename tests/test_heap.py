"""The trials' heap: objects from before the trials are frozen for their duration and handed back after."""

from __future__ import annotations

import gc

from autocompress.search.heap import trials_heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _walked(obj: object) -> bool:
    """Whether the collector walks `obj` (frozen objects are in no generation)."""
    return any(item is obj for item in gc.get_objects())


def test_objects_from_before_are_frozen_during_the_trials_and_handed_back_after():
    before = _Cycle()
    with trials_heap():
        assert gc.get_freeze_count() > 0 and not _walked(before)
        with trials_heap():  # a stage running trials inside trials keeps the freeze
            during = _Cycle()
            assert not _walked(before) and _walked(during)
        assert not _walked(before)  # the inner one did not unfreeze
        _Cycle()  # garbage a trial leaves is still collected
        assert gc.collect() >= 1
    assert _walked(before) and gc.get_freeze_count() == 0
