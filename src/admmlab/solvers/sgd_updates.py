"""The SGD-type update rules, one layer at a time, for the fast step.

``torch.optim`` updates every parameter once the whole gradient is known, so
each step streams all weights, gradients and optimiser state through memory
once more. :class:`~admmlab.solvers.sgd_steps.FastStep` instead updates layer
``i`` as soon as back-propagation has its gradient and no longer needs its
weights, while all three are still in cache. Each rule below is the arithmetic
of the ``torch.optim`` kernel the reference step runs (SGD's and momentum's
``foreach`` ops, the momentum buffer's two in one pass; Adam's fused kernel) on
one contiguous part of the flat parameter tensor; being entry-wise, the parts
together take ``torch.optim``'s step to rounding, and the tests hold the two
paths equal.

The rate follows ``torch.optim.lr_scheduler.StepLR``: multiplied by ``gamma``
after every ``every``-th epoch.
"""

import torch

Tensor = torch.Tensor
METHODS = ("sgd", "sgdm", "adam")


class Update:
    """A rule's rate and its once-a-mini-batch hooks (nothing, unless a rule needs them)."""

    lr: float

    def begin(self) -> None:
        """Once a mini-batch, before its first layer."""

    def graph_key(self) -> tuple:
        """The Python numbers the rule's kernels take: what a CUDA graph of it fixes."""
        return (self.lr,)

    def __call__(self, i: int, p: Tensor, g: Tensor) -> None:
        """Step ``p``, the flat tensor's ``i``-th part, along its gradient ``g``."""
        raise NotImplementedError

    def end(self) -> None:
        """Once a mini-batch, after its last layer."""


class SGDUpdate(Update):
    """``p ← p − lr·g``."""

    def __init__(self, lr: float):
        self.lr = lr

    def __call__(self, i: int, p: Tensor, g: Tensor) -> None:
        p.add_(g, alpha=-self.lr)


class MomentumUpdate(Update):
    """``b ← μ·b + g`` (``b = g`` at the first step), ``p ← p − lr·b``: no dampening."""

    def __init__(self, flat: Tensor, parts: list[slice], lr: float, momentum: float):
        self.lr, self.momentum = lr, momentum
        buf = torch.empty_like(flat)
        self.bufs = [buf[part] for part in parts]
        self.started = False

    def __call__(self, i: int, p: Tensor, g: Tensor) -> None:
        b = self.bufs[i]
        if self.started:
            torch.add(g, b, alpha=self.momentum, out=b)  # one pass, not a mul_ and an add_
        else:
            b.copy_(g)
        p.add_(b, alpha=-self.lr)

    def end(self) -> None:
        self.started = True

    def graph_key(self) -> tuple:
        return (self.lr, self.started)


class AdamUpdate(Update):
    """Adam with bias correction, by the fused kernel ``torch.optim.Adam(fused=True)`` runs."""

    def __init__(self, flat: Tensor, parts: list[slice], lr: float, betas, eps: float):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        exp_avg, exp_avg_sq = torch.zeros_like(flat), torch.zeros_like(flat)
        self.exp_avgs = [exp_avg[part] for part in parts]
        self.exp_avg_sqs = [exp_avg_sq[part] for part in parts]
        # torch.optim keeps a fused step's count as a float32 tensor on the device
        self.count = torch.zeros((), dtype=torch.float32, device=flat.device)

    def begin(self) -> None:
        self.count.add_(1)

    def __call__(self, i: int, p: Tensor, g: Tensor) -> None:
        torch._fused_adam_(
            [p], [g], [self.exp_avgs[i]], [self.exp_avg_sqs[i]], [], [self.count],
            amsgrad=False, lr=self.lr, beta1=self.beta1, beta2=self.beta2, weight_decay=0.0,
            eps=self.eps, maximize=False,
        )  # fmt: skip


def make_update(
    method: str, flat: Tensor, parts: list[slice], *, lr: float, momentum: float, betas, eps: float
) -> Update:
    """The rule for ``method`` on ``flat``, stepped one part (one layer) at a time."""
    if method == "sgd":
        return SGDUpdate(lr)
    if method == "sgdm":
        return MomentumUpdate(flat, parts, lr, momentum)
    if method == "adam":
        return AdamUpdate(flat, parts, lr, tuple(betas), eps)
    raise ValueError(f"unknown SGD-type method {method!r}; choose one of {METHODS}")


class StepRate:
    """The rate of ``StepLR``: ``lr`` times ``gamma`` after every ``every``-th epoch."""

    def __init__(self, update: Update, gamma: float, every: int):
        self.update, self.gamma, self.every, self.epochs = update, gamma, every, 0

    def step(self) -> None:
        self.epochs += 1
        if self.epochs % self.every == 0:
            self.update.lr = self.update.lr * self.gamma
