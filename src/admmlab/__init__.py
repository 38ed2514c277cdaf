"""admmlab: ADMM for sigmoid nets against SGD-type training (Zeng et al., JMLR 2021)."""

from admmlab.allocator import fix_mmap_threshold

__version__ = "0.1.0"

# Before any run allocates: see admmlab.allocator for why.
fix_mmap_threshold()
