"""The built-in solvers' typed settings: one dataclass each, with its ranges and its ``fit``.

Light to import (no torch): the config registers these classes as the schemas of
``conf/solver/*.yaml`` before Hydra composes, so Hydra itself refuses an unknown key
or a wrong type. Each ``fit`` imports its algorithm (:mod:`admmlab.solvers.admm`,
:mod:`admmlab.solvers.sgd`) when it trains.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from admmlab.solvers.interface import (
    SettingError,
    Solver,
    held_out_sets,
    one_of,
    positive_int,
    require,
)

if TYPE_CHECKING:
    from admmlab.solvers.base import FitResult

IMPLS = ("fast", "reference")  # the paper-shaped reference, or the fast path tested equal


@dataclass
class ADMM(Solver):
    """The paper's ADMM for sigmoid-type nets (``solver=admm``): full batch, one epoch
    one iteration; ``beta`` one penalty for every layer or one per layer ``1..L+1``."""

    _target_: str = "admmlab.solvers.settings.ADMM"
    name: str = "admm"
    epochs: int = 50
    lam: float = 1e-6
    beta: Any = 1.0
    impl: str = "fast"

    label: ClassVar[str] = "ADMM"
    step_key: ClassVar[str | None] = "beta"
    smooth_only: ClassVar[bool] = True

    def check(self) -> None:
        require(self.lam >= 0, "lam", "non-negative", self.lam)
        one_of("impl", self.impl, IMPLS)
        for b in self.beta if isinstance(self.beta, list | tuple) else [self.beta]:
            ok = isinstance(b, int | float) and not isinstance(b, bool) and b > 0
            require(ok, "beta", "positive (every entry)", self.beta)

    def check_net(self, depth: int) -> None:
        if isinstance(self.beta, list | tuple) and len(self.beta) != depth + 1:
            raise SettingError(
                f"solver.beta must be a scalar or a list of depth+1 = {depth + 1} values, "
                f"got {len(self.beta)} values {list(self.beta)!r}"
            )

    def fit(self, problem, weights, *, activation, seeds, callback=None) -> "FitResult":
        from admmlab.solvers import admm

        beta = list(self.beta) if isinstance(self.beta, list | tuple) else self.beta
        return admm.fit(
            problem.x_train,
            problem.y_train,
            weights,
            lam=self.lam,
            beta=beta,
            epochs=self.epochs,
            impl=self.impl,
            activation=activation,
            classification=problem.classification,
            callback=callback,
            **held_out_sets(problem),
        )


@dataclass
class SGD(Solver):
    """Plain mini-batch SGD (``solver=sgd``); the rate is multiplied by ``lr_gamma``
    every ``lr_every`` epochs."""

    _target_: str = "admmlab.solvers.settings.SGD"
    name: str = "sgd"
    lr: float = 0.1
    lr_gamma: float = 0.9
    lr_every: int = 10
    batch_size: int = 50
    lam: float = 0.0
    impl: str = "fast"

    label: ClassVar[str] = "SGD"
    step_key: ClassVar[str | None] = "lr"

    def check(self) -> None:
        require(self.lr > 0, "lr", "positive", self.lr)
        require(0 < self.lr_gamma <= 1, "lr_gamma", "in (0, 1]", self.lr_gamma)
        positive_int("lr_every", self.lr_every)
        positive_int("batch_size", self.batch_size)
        require(self.lam >= 0, "lam", "non-negative", self.lam)
        one_of("impl", self.impl, IMPLS)

    def check_data(self, n_train: int) -> None:
        require(
            self.batch_size <= n_train,
            "batch_size",
            f"at most the training set size {n_train}",
            self.batch_size,
        )

    def fit(self, problem, weights, *, activation, seeds, callback=None) -> "FitResult":
        from admmlab.solvers import sgd

        return sgd.fit(
            problem.x_train,
            problem.y_train,
            weights,
            method=self.name,
            activation=activation,
            seeds=seeds,
            callback=callback,
            classification=problem.classification,
            **held_out_sets(problem),
            **{k: v for k, v in self.settings().items() if k not in ("name", "step")},
        )


@dataclass
class SGDM(SGD):
    """SGD with heavy-ball momentum (``solver=sgdm``)."""

    _target_: str = "admmlab.solvers.settings.SGDM"
    name: str = "sgdm"
    momentum: float = 0.5

    label: ClassVar[str] = "SGDM"

    def check(self) -> None:
        super().check()
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)


@dataclass
class Adam(SGD):
    """Adam (``solver=adam``)."""

    _target_: str = "admmlab.solvers.settings.Adam"
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    label: ClassVar[str] = "Adam"

    def check(self) -> None:
        super().check()
        ok = len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)
        require(ok, "betas", "two values in [0, 1)", self.betas)
        require(self.eps > 0, "eps", "positive", self.eps)


@dataclass
class BCD(Solver):
    """Block coordinate descent with lifted variables (``solver=bcd``, Zeng et al. 2019):
    penalties ``gamma`` on ``V_i = σ(U_i)`` and ``rho`` on ``U_i = W_i Ṽ_{i-1}``, a
    proximal weight ``alpha``, weight decay ``lam``; full batch, one epoch one sweep."""

    _target_: str = "admmlab.solvers.settings.BCD"
    name: str = "bcd"
    epochs: int = 50
    gamma: float = 1.0
    rho: float = 1.0
    alpha: float = 5.0
    lam: float = 0.0

    label: ClassVar[str] = "BCD"
    step_key: ClassVar[str | None] = "rho"

    def check(self) -> None:
        for key in ("gamma", "rho", "alpha"):
            require(getattr(self, key) > 0, key, "positive", getattr(self, key))
        require(self.lam >= 0, "lam", "non-negative", self.lam)

    def fit(self, problem, weights, *, activation, seeds, callback=None) -> "FitResult":
        from admmlab.solvers import bcd

        return bcd.fit(
            problem.x_train,
            problem.y_train,
            weights,
            gamma=self.gamma,
            rho=self.rho,
            alpha=self.alpha,
            lam=self.lam,
            epochs=self.epochs,
            activation=activation,
            classification=problem.classification,
            callback=callback,
            **held_out_sets(problem),
        )


@dataclass
class DLADMM(Solver):
    """dlADMM for ReLU nets (``solver=dladmm``, Wang et al. 2019): penalty ``nu`` on the
    hidden links, ``rho`` and a multiplier on the output link, the starting curvatures
    ``theta`` (weights) and ``tau`` (outputs) of its backtracked steps; full batch, one
    epoch one backward-forward iteration."""

    _target_: str = "admmlab.solvers.settings.DLADMM"
    name: str = "dladmm"
    epochs: int = 50
    rho: float = 1.0
    nu: float = 1.0
    theta: float = 1.0
    tau: float = 1.0

    label: ClassVar[str] = "dlADMM"
    step_key: ClassVar[str | None] = "rho"
    activations: ClassVar[tuple[str, ...]] = ("relu",)

    def check(self) -> None:
        for key in ("rho", "nu", "theta", "tau"):
            require(getattr(self, key) > 0, key, "positive", getattr(self, key))

    def fit(self, problem, weights, *, activation, seeds, callback=None) -> "FitResult":
        from admmlab.solvers import dladmm

        return dladmm.fit(
            problem.x_train,
            problem.y_train,
            weights,
            rho=self.rho,
            nu=self.nu,
            theta=self.theta,
            tau=self.tau,
            epochs=self.epochs,
            activation=activation,
            classification=problem.classification,
            callback=callback,
            **held_out_sets(problem),
        )


BUILT_IN: dict[str, type[Solver]] = {
    "admm": ADMM, "sgd": SGD, "sgdm": SGDM, "adam": Adam, "bcd": BCD, "dladmm": DLADMM,
}  # fmt: skip
SGD_METHODS: dict[str, type[SGD]] = {"sgd": SGD, "sgdm": SGDM, "adam": Adam}
