"""Pausing Python's cycle collector while a bulk step builds many objects that hold no cycles.

``agtrace append`` (one block of lines at a time) and ``agtrace report`` (a run's data) allocate
hundreds of thousands of tuples, lists and dicts that form no reference cycles; the collector
walked them again at every full collection (~10-20% of either). Reference counting frees them
as before; only cyclic garbage waits until the step ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector disabled inside the block, and left as the caller had it after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
