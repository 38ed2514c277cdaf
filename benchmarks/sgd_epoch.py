"""An SGD-type epoch at the paper's structures, against its products and plain PyTorch.

    python benchmarks/sgd_epoch.py [--quick | --parts] [--rounds R] [--device cuda]

For each of the paper's deep ReLU structures (square (18, 100) and (15, 80),
product gate (20, 300), smooth radial (12, 400)), K = 20 and K = 1 trials,
float64 and float32, N = 1000 training and 1000 test points, batch 50, SGD:

* ``fast``: seconds per epoch of ``sgd.fit`` (the default fast step; each epoch
  includes its evaluation);
* ``plain``: the same epoch written the obvious way in this file: contiguous
  weights and biases as autograd leaves, ``loss.backward()``, ``torch.optim.SGD``;
* ``products``: the epoch's matrix products alone (forward, both backward
  products, and the evaluation's forward on the training and test sets), run
  in the epoch's order on distinct operands, as the epoch reads them;
* ``warm products``: each product shape timed by itself on the same operands
  over and over (operands warm in cache), summed over the epoch's calls: a
  bound no epoch whose working set exceeds the cache can reach.

``fast``, ``plain`` and ``products`` are timed back to back in each of
``--rounds`` rounds (:func:`measure`); ``warm products`` is timed after them
(the median of 20 calls per shape). The table prints each candidate's fastest
epoch in seconds, the ratios ``products / fast`` (the share of the product
limit the epoch reaches, with the lowest and highest round's) and ``fast /
plain`` as the median of the rounds' own ratios, and ``warm / fast``.
``--quick`` measures square (18, 100) only. ``--parts`` times the two parts of its
K = 20 epoch apart, each beside its own products in the same rounds: the
mini-batch steps, and the evaluation (the weights copied out, both sets' forward).
"""

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from admmlab.nets import get_activation
from admmlab.solvers import sgd
from admmlab.solvers.base import evaluate
from admmlab.solvers.settings import SGD
from admmlab.solvers.sgd_steps import FastStep
from benchkit import header, summary, sync, table

STRUCTURES = {  # name → (task input dimension, depth, width)
    "square (18, 100)": (1, 18, 100),
    "square (15, 80)": (1, 15, 80),
    "product gate (20, 300)": (2, 20, 300),
    "smooth radial (12, 400)": (2, 12, 400),
}
N, BATCH, LR = 1000, 50, 1e-3
ROUNDS = 5  # of the three timed candidates (measure); --rounds


@dataclass
class Row:
    structure: str
    trials: int
    dtype: str
    fast_s: float  # each candidate's fastest epoch
    plain_s: float
    products_s: float
    warm_products_s: float
    limit_shares: list[float]  # products / fast, round by round
    over_plains: list[float]  # fast / plain, round by round

    @property
    def limit_share(self) -> float:
        return statistics.median(self.limit_shares)

    @property
    def over_plain(self) -> float:
        return statistics.median(self.over_plains)


def problem(k: int, d: int, depth: int, width: int, dtype: torch.dtype, device: str):
    """Random inputs and MSRA-like weights with a leading K (the values do not matter)."""
    g = torch.Generator().manual_seed(0)
    dims = [d] + [width] * depth + [1]
    weights = [
        (torch.randn(k, dims[i + 1], dims[i] + 1, generator=g) * (2 / (dims[i] + 1)) ** 0.5)
        for i in range(depth + 1)
    ]
    x = torch.rand(k, N, d, generator=g) * 2 - 1
    y = x.square().sum(dim=-1, keepdim=True)
    as_ = {"dtype": dtype, "device": device}
    return x.to(**as_), y.to(**as_), [w.to(**as_) for w in weights]


def fast_epoch(x, y, weights, epochs: int) -> float:
    seeds = list(range(x.shape[0]))
    fit = sgd.fit(x, y, weights, method="sgd", lr=LR, epochs=epochs, batch_size=BATCH,
                  activation="relu", seeds=seeds, X_test=x, Y_test=y)  # fmt: skip
    return statistics.median(fit.history["epoch_time_s"][1:, 0].tolist())


def plain_epoch(x, y, weights, epochs: int) -> float:
    """The obvious PyTorch loop: leaves, autograd, torch.optim, evaluation each epoch."""
    wts = [w[..., :-1].mT.contiguous().requires_grad_(True) for w in weights]
    bs = [w[..., -1:].mT.contiguous().requires_grad_(True) for w in weights]
    opt = torch.optim.SGD([*wts, *bs], lr=LR)

    def net(v):
        for wt, b in zip(wts[:-1], bs[:-1], strict=True):
            v = torch.relu(torch.baddbmm(b, v, wt))
        return torch.baddbmm(bs[-1], v, wts[-1])

    times = []
    for _ in range(epochs):
        sync(x.device)
        start = time.perf_counter()
        order = torch.randperm(N, device=x.device)
        for i in range(0, N, BATCH):
            idx = order[i : i + BATCH]
            loss = (net(x[:, idx]) - y[:, idx]).square().sum() / BATCH
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            for _ in ("train", "test"):
                (net(x) - y).square().sum(dim=(-2, -1))
        sync(x.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def product_seconds(a_shape, b_shape, dtype, device, transpose_a=False, transpose_b=False):
    """Median seconds of one batched product, its operands laid out as the step has them."""
    a = torch.rand(*a_shape, dtype=dtype, device=device)
    b = torch.rand(*b_shape, dtype=dtype, device=device)
    a = a.mT.contiguous().mT if transpose_a else a
    b = b.mT.contiguous().mT if transpose_b else b
    repeats, times = 20, []
    torch.bmm(a, b)
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        torch.bmm(a, b)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def epoch_products(k: int, d: int, depth: int, width: int, dtype, device) -> float:
    """Seconds the products of one epoch take, each shape timed alone on warm operands."""
    dims = [d] + [width] * depth + [1]
    steps = N // BATCH
    total = 0.0
    for i in range(depth + 1):
        n_in, n_out = dims[i], dims[i + 1]
        forward = product_seconds((k, BATCH, n_in), (k, n_in, n_out), dtype, device)
        # dW = vᵀ δ: v read transposed; dv = δ Wᵀ: the weight read transposed.
        grad_w = product_seconds((k, n_in, BATCH), (k, BATCH, n_out), dtype, device, True)
        grad_v = product_seconds((k, BATCH, n_out), (k, n_out, n_in), dtype, device, False, True)
        evaluation = product_seconds((k, N, n_in), (k, n_in, n_out), dtype, device)
        total += steps * (forward + grad_w + (grad_v if i else 0.0)) + 2 * evaluation
    return total


class ProductsOnly:
    """The epoch's products alone, in the epoch's order on distinct operands.

    The step's working set (every layer's weights, gradients and activations) is far
    larger than a cache at K = 20, so this, not a shape timed on warm operands, is
    the limit an epoch can reach: the same products with nothing else around them.
    """

    def __init__(self, k: int, d: int, depth: int, width: int, dtype, device):
        dims = [d] + [width] * depth + [1]
        as_ = {"dtype": dtype, "device": device}
        self.depth, self.device = depth, device
        self.wts = [torch.rand(k, dims[i], dims[i + 1], **as_) for i in range(depth + 1)]
        self.grads = [torch.empty_like(w) for w in self.wts]
        self.acts = [torch.rand(k, BATCH, n, **as_) for n in dims]
        self.deltas = [torch.rand(k, BATCH, n, **as_) for n in dims]
        self.evals = [torch.rand(k, N, n, **as_) for n in dims]

    def epoch(self) -> float:
        """Seconds of one epoch's products."""
        return self.training() + self.evaluation()

    def training(self) -> float:
        """Seconds of the products of one epoch's mini-batch steps."""
        acts, deltas, wts, grads = self.acts, self.deltas, self.wts, self.grads
        sync(self.device)
        start = time.perf_counter()
        for _ in range(N // BATCH):
            for i in range(self.depth + 1):
                torch.bmm(acts[i], wts[i], out=acts[i + 1])
            for i in range(self.depth, -1, -1):
                torch.bmm(acts[i].mT, deltas[i + 1], out=grads[i])
                if i:
                    torch.bmm(deltas[i + 1], wts[i].mT, out=deltas[i])
        sync(self.device)
        return time.perf_counter() - start

    def evaluation(self) -> float:
        """Seconds of the products of one epoch's evaluation on both sets."""
        evals, wts = self.evals, self.wts
        sync(self.device)
        start = time.perf_counter()
        for _ in ("train", "test"):
            for i in range(self.depth + 1):
                torch.bmm(evals[i], wts[i], out=evals[i + 1])
        sync(self.device)
        return time.perf_counter() - start


def in_rounds(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each candidate's seconds, round by round, the candidates back to back in a turned order."""
    order = list(candidates)
    times: dict[str, list[float]] = {c: [] for c in order}
    for r in range(rounds):
        turn = r % len(order)
        for c in order[turn:] + order[:turn]:
            times[c].append(candidates[c]())
    return times


def measure(name: str, k: int, dtype: torch.dtype, device: str, rounds: int = ROUNDS) -> Row:
    """``rounds`` rounds, each timing all three candidates back to back in a turned order.

    The machine's speed drifts over seconds to minutes, so a ratio is taken within each
    round, where the three epochs ran under the same load, and the median over the
    rounds is kept. A round's fast and plain epochs are the second of a two-epoch run
    (the first warms their buffers up).
    """
    d, depth, width = STRUCTURES[name]
    x, y, weights = problem(k, d, depth, width, dtype, device)
    products = ProductsOnly(k, d, depth, width, dtype, device)
    products.epoch()
    candidates = {
        "fast": lambda: fast_epoch(x, y, weights, 2),
        "plain": lambda: plain_epoch(x, y, weights, 2),
        "products": products.epoch,
    }
    times = in_rounds(candidates, rounds)
    warm = epoch_products(k, d, depth, width, dtype, device)
    fast, plain, limit = times.values()
    return Row(
        name, k, str(dtype).removeprefix("torch."), min(fast), min(plain), min(limit), warm,
        limit_shares=[p / f for p, f in zip(limit, fast, strict=True)],
        over_plains=[f / p for f, p in zip(fast, plain, strict=True)],
    )  # fmt: skip


@dataclass
class Part:
    part: str  # "training" or "evaluation"
    dtype: str
    seconds: float  # fastest
    products_s: float
    limit_shares: list[float]  # products / part, round by round


def measure_parts(k: int, dtype: torch.dtype, device: str, rounds: int) -> list[Part]:
    """The fast epoch's parts apart at square (18, 100), each beside its own products.

    Training: the epoch's mini-batch steps of a ``FastStep`` (the second epoch of each
    round's fresh step); evaluation: the shared weights copied out and both sets
    evaluated, as ``sgd.fit`` does after every epoch.
    """
    d, depth, width = STRUCTURES["square (18, 100)"]
    x, y, weights = problem(k, d, depth, width, dtype, device)
    act = get_activation("relu")
    settings = SGD(epochs=2, lr=LR, batch_size=BATCH)
    products = ProductsOnly(k, d, depth, width, dtype, device)
    batches = list(zip(x.split(BATCH, dim=1), y.split(BATCH, dim=1), strict=True))
    step = FastStep(weights, act, settings)

    def training() -> float:
        fresh = FastStep(weights, act, settings)
        for xb, yb in batches:
            fresh.train(xb, yb)
        sync(device)
        start = time.perf_counter()
        for xb, yb in batches:
            fresh.train(xb, yb)
        sync(device)
        return time.perf_counter() - start

    def evaluation() -> float:
        sync(device)
        start = time.perf_counter()
        evaluate(step.weights(), act, {"train": (x, y), "test": (x, y)})
        sync(device)
        return time.perf_counter() - start

    evaluation()
    times = in_rounds(
        {"training": training, "evaluation": evaluation,
         "training products": products.training, "evaluation products": products.evaluation},
        rounds,
    )  # fmt: skip
    name = str(dtype).removeprefix("torch.")
    return [
        Part(part, name, min(times[part]), min(times[f"{part} products"]),
             [p / t for p, t in zip(times[f"{part} products"], times[part], strict=True)])
        for part in ("training", "evaluation")
    ]  # fmt: skip


def report_parts(parts: list[Part]) -> None:
    table(
        "Square (18, 100), K = 20: the epoch's parts apart; products/part is the median of"
        " the rounds' ratios",
        ["part", "dtype", "seconds", "products s", "products/part", "rounds' range"],
        [(p.part, p.dtype, p.seconds, p.products_s, statistics.median(p.limit_shares),
          f"{min(p.limit_shares):.2f}-{max(p.limit_shares):.2f}") for p in parts],
    )  # fmt: skip


def report(rows: list[Row], where: str = "") -> None:
    """The rows as one table; ``where`` says what they ran on, if not this machine's CPU."""
    table(
        "Fastest epoch in seconds; products/fast (share of the product limit; lowest and"
        " highest round) and fast/plain: medians of the rounds' ratios" + where,
        ["structure", "K", "dtype", "fast s", "plain s", "products s", "warm products s",
         "products/fast", "rounds' range", "warm/fast", "fast/plain"],
        [(r.structure, r.trials, r.dtype, r.fast_s, r.plain_s, r.products_s, r.warm_products_s,
          r.limit_share, f"{min(r.limit_shares):.2f}-{max(r.limit_shares):.2f}",
          r.warm_products_s / r.fast_s, r.over_plain) for r in rows],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="square (18, 100) only")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per row")
    parser.add_argument(
        "--parts",
        action="store_true",
        help="square (18, 100), K = 20: training and evaluation apart",
    )
    args = parser.parse_args()
    if args.parts:
        header(f"The SGD epoch's parts (N = {N}, batch {BATCH}, {args.device})")
        report_parts([
            part
            for dtype in (torch.float64, torch.float32)
            for part in measure_parts(20, dtype, args.device, args.rounds)
        ])  # fmt: skip
        return
    header(f"SGD-type epoch at the paper's structures (N = {N}, batch {BATCH}, {args.device})")
    names = ["square (18, 100)"] if args.quick else list(STRUCTURES)
    rows = [
        measure(name, k, dtype, args.device, args.rounds)
        for name in names
        for k in (20, 1)
        for dtype in (torch.float64, torch.float32)
    ]
    report(rows)
    head = {(r.trials, r.dtype): r for r in rows if r.structure == "square (18, 100)"}
    summary(
        "sgd_epoch",
        limit_share_f64=head[20, "float64"].limit_share,
        over_plain_f64=head[20, "float64"].over_plain,
        limit_share_f32=head[20, "float32"].limit_share,
        over_plain_f32=head[20, "float32"].over_plain,
    )


if __name__ == "__main__":
    main()
