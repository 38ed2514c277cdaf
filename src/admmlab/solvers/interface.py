"""What a solver is to the platform: a dataclass of its own typed settings with a ``fit``.

A new solver is one module and one config file (docs/architecture.md, "Adding a
solver"): a subclass of :class:`Solver` whose fields are its settings, each with a
default, whose :meth:`~Solver.check` refuses a bad value in one line, and whose
:meth:`~Solver.fit` trains; and a YAML file in a ``solver/`` config group that names
the class by ``_target_``. The platform builds the class from the composed config,
so a run checks, and records, only its own solver's settings.

Nothing here knows of Hydra, MLflow or the data loaders: ``fit`` takes any object
with the :class:`Problem` attributes.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # light to import: the config registers solver schemas before Hydra
    from torch import Tensor

    from admmlab.solvers.base import Callback, FitResult


class SettingError(ValueError):
    """A solver setting is out of range; the message is one line naming key and value."""


def require(ok: bool, key: str, requirement: str, value: Any) -> None:
    """Refuse ``solver.<key>`` unless ``ok``, with the line every range check uses."""
    if not ok:
        raise SettingError(f"solver.{key} must be {requirement}, got {value!r}")


def positive_int(key: str, value: Any) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    require(ok, key, "a positive integer", value)


def one_of(key: str, value: Any, options: Sequence[str]) -> None:
    require(value in options, key, f"one of {', '.join(sorted(options))}", value)


class Problem(Protocol):
    """The data a solver trains on: training pairs with a trial dimension, held-out
    pairs or ``None``, and whether targets are one-hot classes."""

    x_train: "Tensor"
    y_train: "Tensor"
    x_test: "Tensor | None"
    y_test: "Tensor | None"
    x_val: "Tensor | None"
    y_val: "Tensor | None"
    classification: bool


@dataclass
class Solver:
    """The settings every solver has; a subclass adds its own and a ``fit``.

    ``_target_`` names the class (as Hydra's ``instantiate`` reads it): a subclass sets
    its own dotted path as the default, a YAML file of a solver outside the package
    gives it.

    ``step`` is the one knob of the stability study (``+sweep=lr_beta``): when set it
    replaces the setting named by ``step_key`` (SGD's ``lr``, ADMM's ``beta``).
    """

    _target_: str = ""
    name: str = ""
    epochs: int = 2000
    step: float | None = None

    label: ClassVar[str] = ""  # the competitor's name in tables ("ADMM", "Adam")
    step_key: ClassVar[str | None] = None
    smooth_only: ClassVar[bool] = False  # needs a differentiable activation
    activations: ClassVar[tuple[str, ...]] = ()  # the only ones it trains, if any

    def __post_init__(self) -> None:
        positive_int("epochs", self.epochs)
        if self.step is not None:
            require(self.step_key is not None, "step", f"unset for {self.name}", self.step)
            object.__setattr__(self, self.step_key, self.step)
        self.check()

    def check(self) -> None:
        """Refuse an out-of-range value of this solver's own settings (:func:`require`)."""

    def check_net(self, depth: int) -> None:
        """Refuse settings that do not fit a net of ``depth`` hidden layers."""

    def check_data(self, n_train: int) -> None:
        """Refuse settings that do not fit a training set of ``n_train`` samples."""

    def fit(
        self,
        problem: Problem,
        weights: "list[Tensor]",
        *,
        activation: str,
        seeds: Sequence[int],
        callback: "Callback | None" = None,
    ) -> "FitResult":
        """Train ``weights`` (``W_1 … W_{L+1}``, leading K) on ``problem``."""
        raise NotImplementedError(f"solver {self.name!r} has no fit")

    def settings(self) -> dict[str, Any]:
        """The values a run records: every field, ``step`` only when it was set."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_target_"}
        if self.step is None:
            values.pop("step")
        return values


def held_out_sets(problem: Problem) -> "dict[str, Tensor | None]":
    """The problem's held-out sets as the ``fit`` functions take them (keywords)."""
    return {
        "X_test": problem.x_test,
        "Y_test": problem.y_test,
        "X_val": problem.x_val,
        "Y_val": problem.y_val,
    }
