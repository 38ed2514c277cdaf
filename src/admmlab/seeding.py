"""One integer seed per trial derives every random draw through named streams."""

import numpy as np
import torch

STREAMS = {"data": 0, "init": 1, "batches": 2}


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for ``stream`` of trial ``seed``."""
    state = np.random.SeedSequence([int(seed), STREAMS[stream]]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for ``stream`` (draws happen on the CPU, then move)."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))
