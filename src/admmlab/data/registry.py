"""Name → loader, so the config's ``dataset.name`` picks the task."""

from admmlab.data.base import Dataset
from admmlab.data.synthetic import TASKS, make_synthetic
from admmlab.seeding import generator as seeded

DATASETS: tuple[str, ...] = tuple(TASKS)


def load_dataset(name: str, *, seed: int, **options) -> Dataset:
    """Load one trial's dataset; ``options`` are the ``dataset`` config keys."""
    generator = seeded(seed, "data")
    if name in TASKS:
        return make_synthetic(
            name,
            n_train=options["n_train"],
            n_test=options["n_test"],
            noise_std=options.get("noise_std", 0.0),
            val_fraction=options.get("val_fraction", 0.0),
            generator=generator,
        )
    raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
