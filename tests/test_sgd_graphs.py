"""The fast step replayed from CUDA graphs takes the eager fast step's steps.

On the CPU the graph is a stand-in that keeps CUDA's contract: capturing runs
nothing, a replay runs what was captured on the tensors it was captured with,
and a replay refuses if the Python numbers a real graph would have fixed have
changed since. On a CUDA device the real graphs are held to the eager step.
"""

from contextlib import nullcontext

import pytest
import torch

from admmlab.nets import get_activation, init_weights
from admmlab.solvers import sgd, sgd_graphs
from admmlab.solvers.settings import SGD_METHODS
from admmlab.solvers.sgd_graphs import WARMUP, GraphedStep, graphed
from admmlab.solvers.sgd_steps import FastStep

K, N, BATCH, EPOCHS = 2, 60, 10, 3


class StandInGraphs:
    """CUDA's capture contract on the CPU, counting captures."""

    def __init__(self):
        self.step: FastStep | None = None
        self.captures = 0

    def capture(self, fn):
        self.captures += 1
        key = self.step.graph_key()

        def replay():
            assert self.step.graph_key() == key, "a graph replayed with other numbers"
            fn()

        return replay


def settings(method: str, lr_every: int = 1):
    extra = {"momentum": 0.5} if method == "sgdm" else {}
    lr = 1e-3 if method == "adam" else 0.05
    return SGD_METHODS[method](epochs=EPOCHS, lr=lr, lam=1e-3, batch_size=BATCH,
                               lr_gamma=0.5, lr_every=lr_every, **extra)  # fmt: skip


def problem(device: str = "cpu"):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(K, N, 1, generator=g, dtype=torch.float64) * 2 - 1
    ws = [init_weights("msra", [1, 8, 6, 1], generator=g) for _ in range(K)]
    w = [torch.stack(layer).to(device) for layer in zip(*ws, strict=True)]
    return x.to(device), x.square().to(device), w


def run(step, x, y) -> None:
    """EPOCHS epochs of BATCH-row mini-batches in a fixed order."""
    for _ in range(EPOCHS):
        step.begin_epoch()
        for xb, yb in zip(x.split(BATCH, dim=1), y.split(BATCH, dim=1), strict=True):
            step.train(xb, yb)
        step.end_epoch()


@pytest.mark.parametrize("method", ["sgd", "sgdm", "adam"])
def test_replayed_steps_equal_the_eager_steps_bit_for_bit(method):
    x, y, w = problem()
    act, s = get_activation("relu"), settings(method)
    eager = FastStep(w, act, s)
    graphs = StandInGraphs()
    replayed = GraphedStep(FastStep(w, act, s), graphs.capture, nullcontext)
    graphs.step = replayed.step
    run(eager, x, y)
    run(replayed, x, y)
    for a, b in zip(eager.weights(), replayed.weights(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(eager.grad_sq_sums(), replayed.grad_sq_sums(), strict=True):
        assert torch.equal(a, b)
    assert replayed.lr == eager.lr == s.lr * s.lr_gamma**EPOCHS
    # The rate changes after every epoch: one capture each (the first after the warm-up).
    assert graphs.captures == EPOCHS
    assert N // BATCH > WARMUP


def test_a_capture_is_kept_while_its_numbers_hold():
    x, y, w = problem()
    graphs = StandInGraphs()
    step = GraphedStep(
        FastStep(w, get_activation("tanh"), settings("sgdm", lr_every=10)),
        graphs.capture,
        nullcontext,
    )
    graphs.step = step.step
    run(step, x, y)
    assert graphs.captures == 1


def test_a_new_batch_shape_warms_up_eagerly_before_its_capture():
    x, y, w = problem()
    act, s = get_activation("relu"), settings("sgd", lr_every=10)
    graphs = StandInGraphs()
    eager = FastStep(w, act, s)
    replayed = GraphedStep(FastStep(w, act, s), graphs.capture, nullcontext)
    graphs.step = replayed.step
    batches = [(x[:, :BATCH], y[:, :BATCH])] * (WARMUP + 1) + [(x[:, :4], y[:, :4])] * WARMUP
    for xb, yb in batches:
        eager.train(xb, yb)
        replayed.train(xb, yb)
    assert graphs.captures == 1  # the 4-row batches ran eagerly: their buffers are not a graph's
    replayed.train(x[:, :4], y[:, :4])
    eager.train(x[:, :4], y[:, :4])
    assert graphs.captures == 2
    for a, b in zip(eager.weights(), replayed.weights(), strict=True):
        assert torch.equal(a, b)


def test_on_the_cpu_the_fast_step_runs_eagerly():
    w = problem()[2]
    step = FastStep(w, get_activation("relu"), settings("sgd"))
    assert graphed(step) is step


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("method", ["sgd", "sgdm", "adam"])
def test_cuda_graphs_take_the_eager_steps(method, monkeypatch):
    captures = []
    cuda_capture = sgd_graphs.cuda_capture

    def counted(device):
        capture, stream = cuda_capture(device)
        return (lambda fn: captures.append(fn) or capture(fn)), stream

    monkeypatch.setattr(sgd_graphs, "cuda_capture", counted)
    x, y, w = problem("cuda")
    kw = dict(method=method, lr=1e-3 if method == "adam" else 0.05, epochs=EPOCHS,
              batch_size=BATCH, lam=1e-3, lr_every=1, activation="relu", seeds=[0, 1])  # fmt: skip
    replayed = sgd.fit(x, y, w, **kw)
    assert len(captures) == EPOCHS  # the rate changes after every epoch
    monkeypatch.setattr(sgd_graphs, "ENABLED", False)
    eager = sgd.fit(x, y, w, **kw)
    cpu = sgd.fit(x.cpu(), y.cpu(), [t.cpu() for t in w], **kw)
    for r, e, c in zip(replayed.weights, eager.weights, cpu.weights, strict=True):
        assert r.is_cuda
        torch.testing.assert_close(r, e, rtol=1e-12, atol=0)
        torch.testing.assert_close(r.cpu(), c, rtol=1e-10, atol=1e-12)
