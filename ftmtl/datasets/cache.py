"""The prepared-image cache the datasets share: reading and preparing a mammogram takes far
longer than a training step, so epochs after the first reuse it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the INbreast package imports this module: no import back at run time
    from ftmtl.inbreast.preprocess import Transform

# (image, masks, Transform), as ftmtl.inbreast.preprocess.prepare_image returns them.
Prepared = tuple[np.ndarray, np.ndarray, "Transform"]
# Memory the cache may hold by default.
DEFAULT_CACHE_BYTES = 512 * 2**20


def prepared_nbytes(prepared: Prepared) -> int:
    """Bytes of a prepared (image, masks, transform)."""
    return int(prepared[0].nbytes + prepared[1].nbytes)


class PreparedCache:
    """Least-recently-used prepared images, up to ``max_bytes`` (and ``max_items`` when given).

    One item always stays, however large. Safe to use from the input pipeline's worker threads;
    an image two threads ask for at once may be prepared twice, but is stored once.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, max_items: int | None = None
                 ) -> None:
        self.max_bytes = int(max_bytes)
        self.max_items = None if max_items is None else max(1, int(max_items))
        self._items: OrderedDict[Hashable, Prepared] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Prepared]) -> Prepared:
        """The item of ``key``, made with ``make()`` (outside the lock) when not held."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        prepared = make()
        with self._lock:
            if key not in self._items:
                self._items[key] = prepared
                self._bytes += prepared_nbytes(prepared)
            self._evict()
        return prepared

    def _evict(self) -> None:
        while len(self._items) > 1 and (
                self._bytes > self.max_bytes
                or (self.max_items is not None and len(self._items) > self.max_items)):
            _, dropped = self._items.popitem(last=False)
            self._bytes -= prepared_nbytes(dropped)
