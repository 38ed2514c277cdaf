"""Keep the C heap of a long run from growing epoch after epoch.

glibc serves a large request from the heap once a request of that size has been
freed (its mmap threshold rises to the largest freed block). A run allocates and
frees many-megabyte evaluation arrays every epoch and keeps small tensors (the
history) between them; the small ones land in the freed holes, so each epoch's
large arrays need fresh heap and the resident set grows without bound. A fixed
threshold sends every large array to its own mapping, returned to the system on
free, and leaves the small, hot allocations of the training steps on the heap.
"""

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
DEFAULT_THRESHOLD = 4 * 2**20
ENV = "ADMMLAB_MMAP_THRESHOLD"


def fix_mmap_threshold(nbytes: int | None = None) -> bool:
    """Fix glibc's mmap threshold (``ENV`` overrides; 0 leaves malloc alone).

    Returns whether the threshold was set: never off Linux or without glibc.
    """
    if nbytes is None:
        nbytes = int(os.environ.get(ENV, DEFAULT_THRESHOLD))
    if nbytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # another C library (musl) or none
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, nbytes))
