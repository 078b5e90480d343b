"""The trials' heap: objects from before the trials are frozen for their duration and handed back after."""

from __future__ import annotations

import gc

from autocompress.search.heap import trials_heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_objects_from_before_are_frozen_during_the_trials_and_handed_back_after():
    before = _Cycle()
    with trials_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0 and not any(obj is before for obj in gc.get_objects())  # collections do not walk it
        with trials_heap():  # a stage running trials inside trials keeps the freeze
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() >= frozen
        _Cycle()  # garbage a trial leaves is still collected
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == 0
    assert any(obj is before for obj in gc.get_objects())
