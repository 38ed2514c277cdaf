"""Tasks: synthetic targets of docs/studies.md and the real-data loaders.

Every loader returns a :class:`Dataset` of plain tensors, samples as rows. The names
below load on first use (torch with them), so that :mod:`admmlab.data.options`, the
options' schemas the config registers before Hydra starts, imports light.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from admmlab.data.base import DataError, Dataset
    from admmlab.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "DataError", "Dataset", "load_dataset"]

_HOME = {
    "DataError": "base",
    "Dataset": "base",
    "DATASETS": "registry",
    "load_dataset": "registry",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'admmlab.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"admmlab.data.{_HOME[name]}"), name)
