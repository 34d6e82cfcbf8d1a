"""engine.app's heap settling for a serving process, without a database."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from engine import app


@pytest.fixture()
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_a_settled_heap_is_frozen_and_waits_longer_for_a_young_collection() -> None:
    assert gc.get_threshold()[0] < app.YOUNG_THRESHOLD
    older = gc.get_threshold()[1:]
    app._settle_heap()
    assert gc.get_freeze_count() > 0  # what the boot built: out of every collection
    # requests in flight are not walked by a young collection every 700 objects
    assert gc.get_threshold() == (app.YOUNG_THRESHOLD, *older)
