"""Tasks: synthetic targets of docs/studies.md and the real-data loaders.

Every loader returns a :class:`Dataset` of plain tensors, samples as rows.
"""

from admmlab.data.base import DataError, Dataset
from admmlab.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "DataError", "Dataset", "load_dataset"]
