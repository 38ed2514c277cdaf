"""Hydra's sweep grammar → Optuna distributions, and whether a multirun continues an
Optuna study (the sweeper and the study's callback both ask; optuna loads only here).

``interval(a, b)`` → float (int when both ends are ints), ``tag(log, …)`` → log
scale, ``range(a, b[, step])`` → int/float with step (``b`` excluded, as in
Hydra), ``choice(…)`` and ``a,b,c`` → categorical.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.samplers import GridSampler
from optuna.trial import FrozenTrial, TrialState

from admmlab import interrupts, optuna_storage, sweeping


class SearchSpaceError(ValueError):
    """A parameter's search space cannot be expressed in Optuna."""


def to_distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of a sweep override; one it rejects is one line."""
    try:
        return _distribution(override)
    except ValueError as err:
        if isinstance(err, SearchSpaceError):
            raise
        raise SearchSpaceError(f"{override.get_key_element()}: {err}") from None


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(value.list))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, stop - step, step=step, log="log" in value.tags)
        last = start + step * round((stop - start) / step - 1)
        return FloatDistribution(float(start), float(last), step=float(step))
    raise SearchSpaceError(f"{key}: {override.input_line!r} is not a sweep Optuna can sample")


def parse(
    params: Mapping[str, Any] | None, arguments: Sequence[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Search space from ``params`` and sweep overrides; the rest stay fixed overrides.

    The last word on a key wins: ``model.width=4`` on the command line takes
    ``model.width`` out of the sweep file's search space, and a sweep on the
    command line replaces the file's range or a fixed value.
    """
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    spelled: dict[tuple[str, str | None], str] = {}  # a key, however prefixed (+, ++)
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        earlier = spelled.pop((override.key_or_group, override.package), None)
        space.pop(earlier, None)
        fixed.pop(earlier, None)
        spelled[override.key_or_group, override.package] = key
        if override.is_sweep_override():
            space[key] = to_distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def check_continuation(
    trials: Sequence[FrozenTrial], space: Mapping[str, BaseDistribution]
) -> None:
    """Refuse a search space that an existing study's trials cannot continue in.

    Optuna lets a range change (a float interval, say) but not a parameter's kind,
    its log scale, nor a categorical's choices: its samplers then fail on the old
    trials' values.
    """
    for trial in trials:
        for name, old in trial.distributions.items():
            new = space.get(name)
            if new is None:
                continue
            try:
                check_distribution_compatibility(old, new)
            except ValueError:
                raise SearchSpaceError(
                    f"{name}: the study's trials sampled it from {_show(old)}, this sweep "
                    f"from {_show(new)}; keep the search space or name a new study "
                    "(hydra.sweeper.study_name=…)"
                ) from None


def _show(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(map(str, dist.choices))})"
    kind = "int" if isinstance(dist, IntDistribution) else "float"
    log = ", log" if getattr(dist, "log", False) else ""
    return f"{kind} [{dist.low}, {dist.high}{log}]"


def grid(space: Mapping[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The grid of a discrete search space, for Optuna's GridSampler."""
    out = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            out[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            out[name] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise SearchSpaceError(
                f"{name}: the grid sampler needs choice(…) or range(…), not an interval"
            )
    return out


def as_override(name: str, value: Any) -> str:
    """``key=value`` in override syntax (floats keep full precision)."""
    return f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}"


class SweepGridSampler(GridSampler):
    """Optuna's grid sampler, minus its ``study.stop()`` when the grid is used up.

    That call only works inside ``study.optimize``; the sweeper asks and tells
    itself and checks :meth:`is_exhausted` before each batch instead.
    """

    def after_trial(self, study, trial, state, values) -> None:
        return None


def multirun_trials(config: DictConfig) -> list[FrozenTrial]:
    """The trials that the Optuna study of a multirun with ``config`` has so far."""
    spec = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
    with interrupts.shielded():
        return optuna_storage.study_trials(
            optuna_storage.open_storage(spec), sweeping.study_name(config)
        )


def continues_a_study(config: DictConfig) -> bool:
    """Whether a multirun with ``config`` goes on with an Optuna study that has trials.

    One whose search space those trials cannot go on in is refused here, in one
    line, before the study's MLflow run is reopened for it.
    """
    trials = multirun_trials(config)
    if trials:
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        space, _ = parse_space(dict(params), list(config.hydra.overrides.task))
        refuse_incompatible_space(sweeping.study_name(config), trials, space)
    return bool(trials)


def trials_in_flight(config: DictConfig) -> int:
    """RUNNING trials of the multirun's Optuna study. Once this process has told all
    of its own, they are another worker's (or one of a worker killed before it could
    tell them)."""
    return sum(t.state == TrialState.RUNNING for t in multirun_trials(config))


@contextmanager
def one_line(prefix: str = "") -> Iterator[None]:
    """A search space Optuna cannot use stops the sweep in one line, past Hydra."""
    try:
        yield
    except SearchSpaceError as err:
        raise SystemExit(f"error: {prefix}{err}") from None


def parse_space(params: dict, arguments: list[str]) -> tuple[dict, list[str]]:
    """:func:`parse`, with a space Optuna cannot sample as one line."""
    with one_line():
        return parse(params, arguments)


def refuse_incompatible_space(name: str, trials: Sequence[FrozenTrial], space: dict) -> None:
    """Stop, in one line, a sweep whose search space the study's trials cannot go on in."""
    with one_line(f"Optuna study {name!r} cannot go on: "):
        check_continuation(trials, space)
