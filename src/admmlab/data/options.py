"""``dataset.options`` of each real data set: one dataclass each, its defaults and ranges.

Light to import (no numpy, no torch): the config registers each class as the schema
of its ``conf/dataset/<name>.yaml`` (``<name>_schema``), so Hydra refuses an unknown
option or a wrong type as it composes; the loaders and the config's validation build
the same class, so the ranges are checked in one place, here.
"""

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

NORMALISERS = ("feature", "sample", "none")


class OptionError(ValueError):
    """A data set option is wrong; the message is one line naming it."""


def _require(ok: bool, key: str, requirement: str, value: Any) -> None:
    if not ok:
        raise OptionError(f"dataset.options.{key} must be {requirement}, got {value!r}")


def _positive_int(key: str, value: Any) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    _require(ok, key, "a positive integer", value)


def _fraction(key: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1
    _require(ok, key, "in (0, 1)", value)


def image_size(value: Any) -> tuple[int, int] | None:
    """An int (square) or ``[height, width]`` as ``(height, width)``; ``None`` stays."""
    if value is None:
        return None
    size = [value, value] if isinstance(value, int) else list(value)
    return size[0], size[1]


def _image_size(key: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    size = [value, value] if isinstance(value, int) else list(value or [])
    ok = len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    _require(ok and all(v > 0 for v in size), key, "a positive integer or [height, width]", value)


@dataclass
class SplitOptions:
    """``digits`` and ``breast_cancer``: a stratified share held out for testing."""

    test_fraction: float = 0.3  # per class (the platform's choice)
    normalize: str = "feature"

    def __post_init__(self) -> None:
        _fraction("test_fraction", self.test_fraction)
        _require(self.normalize in NORMALISERS, "normalize", _one_of(), self.normalize)


@dataclass
class EarthquakeOptions:
    """NOAA intensity reports: the feature columns, the label and its threshold, sizes."""

    features: list[str] = field(
        default_factory=lambda: [
            "EQ_LATITUDE",
            "EQ_LONGITUDE",
            "CITY_LATITUDE",
            "CITY_LONGITUDE",
            "EQ_MAGNITUDE",
            "EQ_DEPTH",
        ]
    )
    label: str = "MMI"
    mmi_threshold: float = 4  # class 0: MMI 1–4, class 1: MMI 5–12 (the paper)
    n_train: int = 4173  # the paper's split
    n_test: int = 4000
    normalize: str = "feature"

    def __post_init__(self) -> None:
        ok = bool(self.features) and all(isinstance(f, str) for f in self.features)
        _require(ok, "features", "a non-empty list of column names", self.features)
        _require(isinstance(self.label, str), "label", "a column name", self.label)
        threshold = self.mmi_threshold
        ok = isinstance(threshold, int | float) and not isinstance(threshold, bool)
        _require(ok, "mmi_threshold", "a number", threshold)
        _positive_int("n_train", self.n_train)
        _positive_int("n_test", self.n_test)
        _require(self.normalize in NORMALISERS, "normalize", _one_of(), self.normalize)


@dataclass
class EybOptions:
    """Extended Yale B: the image size, the test share per subject, the .mat's keys."""

    image_size: Any = field(default_factory=lambda: [32, 32])  # an int, or [height, width]
    test_fraction: float = 0.5  # each subject's images, half and half (the paper)
    normalize: str = "sample"  # the paper z-scores each image
    features_key: str = "fea"
    labels_key: str = "gnd"
    mat_image_shape: Any = None  # (height, width) of the .mat's rows; None: square

    def __post_init__(self) -> None:
        _image_size("image_size", self.image_size)
        _image_size("mat_image_shape", self.mat_image_shape, optional=True)
        _fraction("test_fraction", self.test_fraction)
        _require(self.normalize in NORMALISERS, "normalize", _one_of(), self.normalize)


@dataclass
class PtbOptions:
    """PTB heartbeats: the paper's split sizes."""

    n_train: int = 7000  # the paper's split
    n_test: int = 7552
    normalize: str = "none"  # the published beats are already scaled to [0, 1]

    def __post_init__(self) -> None:
        _positive_int("n_train", self.n_train)
        _positive_int("n_test", self.n_test)
        _require(self.normalize in NORMALISERS, "normalize", _one_of(), self.normalize)


def _one_of() -> str:
    return f"one of {', '.join(NORMALISERS)}"


OPTIONS: dict[str, type] = {
    "earthquake": EarthquakeOptions,
    "eyb": EybOptions,
    "ptb": PtbOptions,
    "digits": SplitOptions,
    "breast_cancer": SplitOptions,
}


def options_for(name: str, given: dict[str, Any]) -> Any:
    """The options of data set ``name``: its class's defaults, then ``given``, checked."""
    cls = OPTIONS[name]
    known = [f.name for f in fields(cls)]
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean dataset.options.{close[0]}?" if close else ""
            raise OptionError(
                f"dataset.options.{key} is not an option of {name}; "
                f"its options are {', '.join(known)}{hint}"
            )
    return cls(**given)


def defaults(name: str) -> dict[str, Any]:
    """The options of ``name`` left at their defaults, as a dict."""
    return asdict(OPTIONS[name]())
