"""The serving process's collector after start-up: the start-up heap frozen out of every collection,
young collections rarer, and collection itself still on."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from server.garbage_collection import YOUNG_COLLECTION_THRESHOLD, settle_startup_heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_what_is_alive_and_raises_only_the_young_threshold() -> None:
    _, older, oldest = gc.get_threshold()
    settle_startup_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, older, oldest)
    assert gc.isenabled()


@pytest.mark.usefixtures("restored_collector")
def test_cyclic_garbage_made_after_settling_is_still_collected() -> None:
    settle_startup_heap()

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    alive = weakref.ref(node)
    del node
    gc.collect()
    assert alive() is None
