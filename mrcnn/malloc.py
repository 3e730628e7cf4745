"""glibc malloc settings that keep TensorFlow's CPU buffers in the process between steps.

TensorFlow's CPU allocator takes every tensor from ``malloc``. With glibc's defaults, buffers of
a few MB are ``mmap``-ed and unmapped again on each step, and the heap top is trimmed back to
the system, so each training step page-faults its working set in anew: on a 2-core VM that was
40 % of all CPU time in the kernel and a third of the wall time of a fpn_cpu step
(benchmarks/bench_malloc.py prints the comparison). Raising the mmap and trim thresholds keeps
the pages; the process keeps its peak heap instead of returning it between steps.

Applied once per process by :func:`tune_malloc` when a model is built. Nothing happens where
glibc is absent, when the user set any ``MALLOC_*_`` variable (their choice wins), or with
``MRCNN_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# Values: mmap only above 32 MB (glibc's largest dynamic threshold on 64-bit), trim only above
# 2 GB of free heap top (mallopt takes an int), grow the heap 256 MB at a time.
SETTINGS: dict[str, tuple[int, int]] = {
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 2**31 - 1),
    "MALLOC_TOP_PAD_": (M_TOP_PAD, 256 * 1024 * 1024),
}
OPT_OUT = "MRCNN_MALLOC_TUNING"

_applied: bool | None = None


def user_chose_malloc(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether the environment already sets glibc malloc, or opts out of the tuning."""
    return environ.get(OPT_OUT, "1") == "0" or any(name in environ for name in SETTINGS)


def tune_malloc() -> bool:
    """Apply :data:`SETTINGS` through ``mallopt`` once per process; True when they are in force."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if user_chose_malloc():
        logger.debug("malloc tuning skipped: the environment sets it (%s or MALLOC_*_)", OPT_OUT)
        return False
    libc = _glibc()
    if libc is None:
        return False
    for name, (param, value) in SETTINGS.items():
        if libc.mallopt(param, value) != 1:
            logger.debug("mallopt(%s) refused %d", name, value)
            return False
    logger.debug("malloc tuned: %s", {name: value for name, (_, value) in SETTINGS.items()})
    return True


def _glibc() -> ctypes.CDLL | None:
    """glibc's C library, or None (musl, macOS, Windows: no mallopt with these meanings)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc if libc.gnu_get_libc_version() else None
