"""Real classification data: the paper's three sets and two bundled with scikit-learn.

``earthquake``, ``eyb`` and ``ptb`` are read from files the user points at
(``dataset.path`` or an environment variable); nothing is downloaded. ``digits``
and ``breast_cancer`` ship with scikit-learn and work out of the box.

Every loader does the same three steps with the trial's "data" generator: split
train/test (sizes or shares in ``dataset.options``; the synthetic keys
``n_train``/``n_test``/``noise_std`` are ignored), hold out ``val_fraction`` of
the training part for validation, then normalise with statistics of the
remaining training part only. Targets are one-hot (0/1) under the square loss.
"""

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from admmlab.data import options
from admmlab.data.base import DataError, Dataset, split_validation
from admmlab.data.formats import parse_number, read_numeric_csv, read_pgm, read_table

Tensor = torch.Tensor
Options = dict[str, Any]
NORMALISERS = options.NORMALISERS


@dataclass(frozen=True)
class Source:
    """Where a file-based data set comes from, for the one-line error messages."""

    env: str
    expects: str
    published: str


SOURCES = {
    "earthquake": Source(
        "ADMMLAB_EARTHQUAKE",
        "one tab- or comma-separated export with a header naming the columns of "
        "dataset.options.features and dataset.options.label (NOAA names: EQ_LATITUDE, "
        "EQ_LONGITUDE, CITY_LATITUDE, CITY_LONGITUDE, EQ_MAGNITUDE, EQ_DEPTH, MMI)",
        "NOAA NCEI Earthquake Intensity Database, https://www.ngdc.noaa.gov/hazard/intintro.shtml",
    ),
    "eyb": Source(
        "ADMMLAB_EYB",
        "the cropped faces folder CroppedYale/yaleBxx/*.pgm (one subfolder per subject) "
        "or a .mat file with fea (images as rows) and gnd (labels)",
        "Extended Yale Face Database B (Georghiades, Belhumeur & Kriegman; UCSD, "
        "vision.ucsd.edu), the CroppedYale archive",
    ),
    "ptb": Source(
        "ADMMLAB_PTB",
        "a folder holding ptbdb_normal.csv and ptbdb_abnormal.csv (comma-separated, "
        "no header, one heartbeat per row: 187 samples, then the label 0 or 1)",
        "Kaggle 'ECG Heartbeat Categorization Dataset' (Kachuee et al. 2018), made from "
        "PhysioNet's PTB Diagnostic ECG Database",
    ),
}

# Defaults of dataset.options, per data set (conf/dataset/<name>.yaml repeats them).
DEFAULTS: dict[str, Options] = {name: options.defaults(name) for name in options.OPTIONS}

PTB_FILES = ("ptbdb_normal.csv", "ptbdb_abnormal.csv")


@dataclass(frozen=True)
class Samples:
    """Every usable sample of a data set, before any split."""

    x: np.ndarray  # (N, features)
    labels: np.ndarray  # (N,) class indices 0..n_classes-1
    n_classes: int


Split = tuple[Samples, np.ndarray, np.ndarray]  # samples, train indices, test indices


# ---------------------------------------------------------------- option checks


def _settings(name: str, given: Options) -> Options:
    """The data set's options, checked (:mod:`admmlab.data.options`), as a dict."""
    try:
        return asdict(options.options_for(name, given))
    except options.OptionError as err:
        raise DataError(str(err)) from None


# ---------------------------------------------------------------- locating files


@contextmanager
def reading(name: str) -> Iterator[None]:
    """Complete any file problem with what was expected and where it is published."""
    source = SOURCES[name]
    try:
        yield
    except DataError as err:
        raise DataError(
            f"{name}: {err}; {name} reads {source.expects}; published as: {source.published} "
            "(nothing is downloaded)"
        ) from None


def locate(name: str, path: str | None) -> Path:
    """``dataset.path``, else the data set's environment variable; it must exist."""
    env = SOURCES[name].env
    raw = path or os.environ.get(env)
    if not raw:
        raise DataError(f"no data path: set dataset.path=... or the environment variable {env}")
    located = Path(raw).expanduser()
    if not located.exists():
        raise DataError(f"{located} does not exist")
    return located


def _file_key(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: an edited file is read again."""
    info = path.stat()
    return str(path.resolve()), info.st_mtime_ns, info.st_size


# ---------------------------------------------------------------- splits


def split_sizes(n: int, n_train: int, n_test: int) -> tuple[int, int]:
    """The requested sizes, or the same proportions of a smaller file."""
    if n >= n_train + n_test:
        return n_train, n_test
    train = min(max(1, round(n * n_train / (n_train + n_test))), n - 1)
    return train, n - train


Indices = tuple[np.ndarray, np.ndarray]  # train, test


def shuffled_split(n: int, n_train: int, n_test: int, generator: torch.Generator) -> Indices:
    """Random disjoint train/test index sets of the given (or proportional) sizes."""
    if n < 2:
        raise DataError(f"need at least 2 samples to split into train and test, got {n}")
    n_train, n_test = split_sizes(n, n_train, n_test)
    order = torch.randperm(n, generator=generator).numpy()
    return order[:n_train], order[n_train : n_train + n_test]


def stratified_split(
    labels: np.ndarray, test_fraction: float, generator: torch.Generator
) -> Indices:
    """Per class, a random ``test_fraction`` (rounded down) goes to the test part."""
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[torch.randperm(len(members), generator=generator).numpy()]
        n_test = int(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    # Mix the classes, so the training rows are not sorted by label.
    return train_idx[torch.randperm(len(train_idx), generator=generator).numpy()], test_idx


# ---------------------------------------------------------------- the data sets


def earthquake(path: str | None, settings: Options, generator: torch.Generator) -> Split:
    """NOAA intensity reports: six numeric features, MMI ≤ threshold vs above."""
    features, label = settings["features"], settings["label"]
    threshold = settings["mmi_threshold"]
    n_train, n_test = settings["n_train"], settings["n_test"]
    with reading("earthquake"):
        file = locate("earthquake", path)
        if not file.is_file():
            raise DataError(f"{file} is not a file")
        table = _earthquake_table(_file_key(file), (*features, label))
    samples = Samples(table[:, :-1], (table[:, -1] > threshold).astype(np.int64), 2)
    return samples, *shuffled_split(len(table), n_train, n_test, generator)


@lru_cache(maxsize=4)
def _earthquake_table(key: tuple[str, int, int], columns: tuple[str, ...]) -> np.ndarray:
    """Complete records as rows of ``columns`` (features then MMI); incomplete ones dropped."""
    path = Path(key[0])
    names, rows = read_table(path)
    where = [_column(names, column, path) for column in columns]
    records = []
    for line, row in rows:
        if len(row) <= max(where):
            raise DataError(
                f"{path} line {line}: expected {len(names)} fields (as the header), got {len(row)}"
            )
        values = [parse_number(row[i], path, line, c) for i, c in zip(where, columns, strict=True)]
        if any(math.isnan(v) for v in values):
            continue
        if not 1 <= values[-1] <= 12:
            raise DataError(
                f"{path} line {line}: column {columns[-1]} must be an intensity 1 to 12, "
                f"got {values[-1]:g}"
            )
        records.append(values)
    if len(records) < 2:
        raise DataError(f"{path}: fewer than 2 complete records with columns {', '.join(columns)}")
    return np.array(records)


def _column(names: list[str], column: str, path: Path) -> int:
    """Header lookup ignoring case, so exports that capitalise differently still load."""
    folded = [n.casefold() for n in names]
    if column.casefold() not in folded:
        raise DataError(
            f"{path} line 1: no column {column!r} in the header ({', '.join(names)}); "
            "name the columns with dataset.options.features and dataset.options.label"
        )
    return folded.index(column.casefold())


def eyb(path: str | None, settings: Options, generator: torch.Generator) -> Split:
    """Extended Yale B faces: a CroppedYale folder of PGMs or a ``fea``/``gnd`` .mat file."""
    size = options.image_size(settings["image_size"])
    mat_shape = options.image_size(settings["mat_image_shape"])
    test_fraction = settings["test_fraction"]
    with reading("eyb"):
        location = locate("eyb", path)
        if location.is_dir():
            x, labels = _eyb_folder(_pgm_files(location), size)
        elif location.suffix.lower() == ".mat":
            keys = str(settings["features_key"]), str(settings["labels_key"])
            x, labels = _eyb_mat(_file_key(location), *keys, mat_shape, size)
        else:
            raise DataError(f"{location} is neither a folder nor a .mat file")
    samples = Samples(x, labels, int(labels.max()) + 1)
    return samples, *stratified_split(labels, test_fraction, generator)


def _pgm_files(location: Path) -> tuple[tuple[str, str, int, int], ...]:
    """``(subject, file, mtime, size)`` of every non-ambient face, subjects sorted."""
    root = location / "CroppedYale" if (location / "CroppedYale").is_dir() else location
    files = []
    for subject in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(subject.glob("*.pgm")):
            if "Ambient" in image.name:  # the ambient shots have no directed light
                continue
            info = image.stat()
            files.append((subject.name, str(image), info.st_mtime_ns, info.st_size))
    if not files:
        raise DataError(f"{root} holds no subject folders of .pgm images")
    return tuple(files)


@lru_cache(maxsize=2)
def _eyb_folder(
    files: tuple[tuple[str, str, int, int], ...], size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    subjects = sorted({subject for subject, *_ in files})
    x = np.stack([resize(read_pgm(Path(file)), size).reshape(-1) for _, file, *_ in files])
    labels = np.array([subjects.index(subject) for subject, *_ in files])
    return x, labels


@lru_cache(maxsize=2)
def _eyb_mat(
    key: tuple[str, int, int],
    features_key: str,
    labels_key: str,
    image_shape: tuple[int, int] | None,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    path = Path(key[0])
    try:
        content = loadmat(path)
    except NotImplementedError:
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file; save it with -v7") from None
    except (ValueError, TypeError, OSError) as err:
        raise DataError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    for k in (features_key, labels_key):
        if k not in content:
            raise DataError(f"{path}: no variable {k!r}; expected fea (images as rows) and gnd")
    fea = np.asarray(content[features_key], dtype=np.float64)
    gnd = np.asarray(content[labels_key]).reshape(-1)
    if fea.ndim != 2 or len(gnd) != fea.shape[0]:
        raise DataError(
            f"{path}: {features_key} must be (images × pixels) with one {labels_key} label "
            f"per row, got {features_key} {fea.shape} and {len(gnd)} labels"
        )
    _, labels = np.unique(gnd, return_inverse=True)
    return _mat_images(fea, image_shape, size, path), labels


def _mat_images(
    fea: np.ndarray, shape: tuple[int, int] | None, size: tuple[int, int], path: Path
) -> np.ndarray:
    pixels = fea.shape[1]
    if shape is None:
        side = math.isqrt(pixels)
        if side * side != pixels:
            raise DataError(
                f"{path}: {pixels} pixels per image is not square; "
                "set dataset.options.mat_image_shape=[height,width]"
            )
        shape = (side, side)
    if shape[0] * shape[1] != pixels:
        raise DataError(f"{path}: mat_image_shape {list(shape)} does not hold {pixels} pixels")
    if tuple(shape) == tuple(size):
        return fea
    # MATLAB stores each image column by column.
    return np.stack([resize(row.reshape(shape, order="F"), size).reshape(-1) for row in fea])


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of one greyscale image (no-op at the right size)."""
    if image.shape == tuple(size):
        return image
    batch = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    return F.interpolate(batch, size=size, mode="bilinear", antialias=True)[0, 0].numpy()


def ptb(path: str | None, settings: Options, generator: torch.Generator) -> Split:
    """PTB heartbeats: the normal and the abnormal CSV of the Kaggle release."""
    n_train, n_test = settings["n_train"], settings["n_test"]
    with reading("ptb"):
        folder = locate("ptb", path)
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder")
        files = [folder / name for name in PTB_FILES]
        for file in files:
            if not file.is_file():
                raise DataError(f"{file} does not exist")
        table = _ptb_table(tuple(_file_key(f) for f in files))
    samples = Samples(table[:, :-1], table[:, -1].astype(np.int64), 2)
    return samples, *shuffled_split(len(table), n_train, n_test, generator)


@lru_cache(maxsize=2)
def _ptb_table(keys: tuple[tuple[str, int, int], ...]) -> np.ndarray:
    tables = []
    for key in keys:
        path = Path(key[0])
        table = read_numeric_csv(path)
        if table.shape[1] < 2:
            raise DataError(f"{path} line 1: expected the samples then the label, got 1 column")
        bad = np.flatnonzero(~np.isin(table[:, -1], (0.0, 1.0)))
        if len(bad):
            raise DataError(
                f"{path} line {bad[0] + 1}: the last column must be the label 0 or 1, "
                f"got {table[bad[0], -1]:g}"
            )
        if tables and table.shape[1] != tables[0].shape[1]:
            raise DataError(
                f"{path} line 1: expected {tables[0].shape[1]} columns like {keys[0][0]}, "
                f"got {table.shape[1]}"
            )
        tables.append(table)
    return np.concatenate(tables)


def bundled(name: str) -> Callable[[str | None, Options, torch.Generator], Split]:
    """A scikit-learn toy set (no download): a stratified train/test split."""

    def load(path: str | None, settings: Options, generator: torch.Generator) -> Split:
        x, labels = _sklearn(name)
        samples = Samples(x, labels, int(labels.max()) + 1)
        return samples, *stratified_split(labels, settings["test_fraction"], generator)

    return load


@cache
def _sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


LOADERS: dict[str, Callable[[str | None, Options, torch.Generator], Split]] = {
    "earthquake": earthquake,
    "eyb": eyb,
    "ptb": ptb,
    "digits": bundled("digits"),
    "breast_cancer": bundled("breast_cancer"),
}
REAL_DATASETS: tuple[str, ...] = tuple(LOADERS)


# ---------------------------------------------------------------- assembling a trial


def normaliser(kind: str, x_train: Tensor) -> Callable[[Tensor], Tensor]:
    """``feature``: z-score each column with training statistics; ``sample``: each row."""
    if kind == "feature":
        mean, std = x_train.mean(dim=0), x_train.std(dim=0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))  # constant pixels stay 0
        return lambda x: (x - mean) / std
    if kind == "sample":

        def per_row(x: Tensor) -> Tensor:
            mean, std = x.mean(dim=1, keepdim=True), x.std(dim=1, keepdim=True, correction=0)
            return (x - mean) / torch.where(std > 0, std, torch.ones_like(std))

        return per_row
    return lambda x: x


def load_real(
    name: str,
    *,
    path: str | None,
    options: Options,
    val_fraction: float,
    generator: torch.Generator,
) -> Dataset:
    """One trial of a real data set: split, hold out validation, normalise, one-hot."""
    settings = _settings(name, dict(options or {}))
    samples, train, test = LOADERS[name](path, settings, generator)
    x = torch.from_numpy(np.array(samples.x, dtype=np.float64))
    y = F.one_hot(torch.from_numpy(samples.labels), samples.n_classes).to(torch.float64)
    train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
    x_train, y_train, x_val, y_val = split_validation(
        x[train_t], y[train_t], val_fraction, generator
    )
    scale = normaliser(settings["normalize"], x_train)
    return Dataset(
        name,
        "classification",
        scale(x_train),
        y_train,
        scale(x[test_t]),
        y[test_t],
        None if x_val is None else scale(x_val),
        y_val,
    )
