"""admmlab: ADMM for sigmoid nets against SGD-type training (Zeng et al., JMLR 2021)."""

import os

# MKL's own memory manager keeps buffers that grew without bound in long SGD runs of
# sigmoid nets (tens of MB an epoch, until the kernel killed the process). MKL reads this
# switch once, before its first call, so it is set before anything here imports torch.
os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")

__version__ = "0.1.0"
