"""Give freed heap memory back to the system between the batches of a streamed pass.

glibc's allocator serves large buffers (a batch of subtomograms, a network's activations) from its
heap once a few of them have been freed (its mmap threshold rises), and a heap fragmented by many
small objects (e.g. after 10^5 MRC headers were checked) then keeps growing: measured, ``classify
predict`` on 10^5 subtomograms of 16^3 peaked at 2.1 GB against 0.5 GB for 10^3, with the same
batch size. :func:`release_free_memory` after each batch (``malloc_trim``) keeps the peak flat at
no measurable cost (16,000 subtomograms: 66 s with it, 63 s without). On systems without glibc it
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_free_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the allocator's free heap pages to the system; True where glibc's ``malloc_trim`` exists."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
