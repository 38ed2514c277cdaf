"""Name → loader, so the config's ``dataset.name`` picks the task."""

from admmlab.data.base import Dataset
from admmlab.data.real import REAL_DATASETS, load_real
from admmlab.data.synthetic import TASKS, make_synthetic
from admmlab.seeding import generator as seeded

DATASETS: tuple[str, ...] = (*TASKS, *REAL_DATASETS)


def load_dataset(name: str, *, seed: int, **options) -> Dataset:
    """Load one trial's dataset; ``options`` are the ``dataset`` config keys.

    Synthetic tasks read ``n_train``, ``n_test``, ``noise_std``; real data sets read
    ``path`` and the free dict ``options`` instead. Both honour ``val_fraction``.
    """
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
    if name in REAL_DATASETS:
        return load_real(
            name,
            path=options.get("path"),
            options=options.get("options") or {},
            val_fraction=options.get("val_fraction", 0.0),
            generator=generator,
        )
    raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
