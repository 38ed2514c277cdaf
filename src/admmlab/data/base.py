"""The dataset container shared by every task."""

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


class DataError(ValueError):
    """A data file is missing or malformed; the message is one line for the user."""


@dataclass
class Dataset:
    """Train/validation/test splits of one trial, samples as rows.

    ``kind`` is ``"regression"`` or ``"classification"`` (one-hot targets under the
    square loss, prediction by arg max). ``x_val``/``y_val`` are ``None`` when the
    configuration asks for no validation split.
    """

    name: str
    kind: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_val: Tensor | None = None
    y_val: Tensor | None = None

    @property
    def classification(self) -> bool:
        return self.kind == "classification"

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "Dataset":
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return Dataset(
            self.name,
            self.kind,
            *(move(t) for t in (self.x_train, self.y_train, self.x_test, self.y_test)),
            move(self.x_val),
            move(self.y_val),
        )


def split_validation(
    x: Tensor, y: Tensor, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Hold out a seeded random ``fraction`` of the training part for validation."""
    if fraction <= 0:
        return x, y, None, None
    n_val = max(1, round(fraction * x.shape[0]))
    perm = torch.randperm(x.shape[0], generator=generator)
    val, train = perm[:n_val], perm[n_val:]
    return x[train], y[train], x[val], y[val]


def stack_trials(datasets: list[Dataset]) -> Dataset:
    """One dataset with a leading trial dimension K from K per-seed draws."""
    first = datasets[0]

    def stack(attr: str) -> Tensor | None:
        ts = [getattr(d, attr) for d in datasets]
        return None if ts[0] is None else torch.stack(ts)

    return Dataset(
        first.name,
        first.kind,
        *(stack(a) for a in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")),
    )
