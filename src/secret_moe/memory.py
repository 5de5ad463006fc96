"""Keep freed memory in the process's heap, so that what a training step frees, the next step reuses.

A step allocates and frees the same large tensors every time (the (m, d) gradients of the expert tables,
the score block, activations).  glibc's malloc serves blocks above its mmap threshold (128 KiB at first)
with fresh pages from the kernel and returns them on free, and trims free memory from the top of the heap;
each new page then costs a page fault and the kernel zeroing it, every step.  `keep_freed_memory` raises
both thresholds, so blocks up to the mmap threshold's limit (32 MiB on 64-bit glibc) come from the heap
and stay there once freed.  Nothing changes in what is computed.  On other C libraries it does nothing and
says so.  `benchmarks/bench_page_faults.py` measures a step both ways (numbers in docs/performance.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD = 1 << 30  # free memory kept at the top of the heap before it is given back


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed blocks up to 32 MiB instead of unmapping them; True if it took."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("no glibc mallopt here (%s): freed memory goes back to the system as usual", name)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
