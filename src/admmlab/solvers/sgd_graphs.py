"""The fast step on a GPU, each mini-batch step replayed from a CUDA graph.

At the paper's sizes a GPU spends an SGD-type step launching kernels: about ten
per layer, each with microseconds of work. A CUDA graph records the step's
launches once and replays them all with one call. :class:`FastStep` suits
this: every intermediate goes into a buffer it keeps, and the weights,
gradients and optimiser state move in place, so a replay needs only the
mini-batch copied into two fixed input tensors.

A capture also fixes the Python numbers its kernels were given: the rate, the
update's own state (whether momentum has started), and the batch's shape.
:meth:`FastStep.graph_key` names them; when the key changes (``StepLR``'s rate
every ``lr_every`` epochs) the step is captured again. The first steps of
each batch shape run eagerly on the capture's stream, as CUDA graphs need:
cuBLAS and the caching allocator set themselves up there, and the step's
buffers for that shape exist before any capture.
"""

from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from admmlab.solvers.sgd_steps import FastStep

Tensor = torch.Tensor
Replay = Callable[[], None]
Capture = Callable[[Callable[[], None]], Replay]

WARMUP = 3  # eager steps on the capture's stream before the first capture
ENABLED = True  # False: the fast step runs eagerly on CUDA too (benchmarks compare both)


class GraphedStep:
    """:class:`FastStep`'s ``train`` captured once per :meth:`FastStep.graph_key` and replayed.

    ``capture`` records a callable and returns what replays it; ``stream`` is the
    context every eager step and capture runs in. Both default to CUDA's
    (:func:`cuda_capture`); the tests give CPU stand-ins that check the same
    contract.
    """

    def __init__(
        self,
        step: "FastStep",
        capture: Capture | None = None,
        stream: Callable[[], AbstractContextManager] | None = None,
    ):
        self.step = step
        if capture is None or stream is None:
            capture, stream = cuda_capture(step.flat.device)
        self.capture, self.stream = capture, stream
        self.eager_steps: Counter[tuple] = Counter()  # per batch shape
        self.key: Hashable = None
        self.replay: Replay | None = None
        self.x = self.y = torch.empty(0)

    @property
    def lr(self) -> float:
        return self.step.lr

    def begin_epoch(self) -> None:
        self.step.begin_epoch()

    def train(self, x: Tensor, y: Tensor) -> None:
        shapes = (x.shape, y.shape)
        if self.eager_steps[shapes] < WARMUP:  # so no capture allocates the step's buffers
            with self.stream():
                self.step.train(x, y)
            self.eager_steps[shapes] += 1
            return
        key = (*shapes, self.step.graph_key())
        if key != self.key:
            self._capture(x, y, key)
        else:
            self.x.copy_(x)
            self.y.copy_(y)
        self.replay()

    def _capture(self, x: Tensor, y: Tensor, key: Hashable) -> None:
        self.replay = None  # the old graph and its private memory go
        self.x = x_in = x.clone(memory_format=torch.contiguous_format)
        self.y = y_in = y.clone(memory_format=torch.contiguous_format)
        with self.stream():
            self.replay = self.capture(lambda: self.step.train(x_in, y_in))
        self.key = key

    def end_epoch(self) -> None:
        self.step.end_epoch()

    def grad_sq_sums(self) -> list[Tensor]:
        return self.step.grad_sq_sums()

    def weights(self) -> list[Tensor]:
        return self.step.weights()


def cuda_capture(device: torch.device) -> tuple[Capture, Callable[[], AbstractContextManager]]:
    """Capture into ``torch.cuda.CUDAGraph`` on one side stream, shared with the warm-up.

    Each graph has a private memory pool of its own: a pool shared by successive
    captures must outlive every graph in it, and each graph here is dropped
    before the next capture.
    """
    side = torch.cuda.Stream(device)

    @contextmanager
    def stream() -> Iterator[None]:
        """Run on ``side`` after the current stream's work, which then waits for it."""
        current = torch.cuda.current_stream(device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            yield
        current.wait_stream(side)

    def capture(fn: Callable[[], None]) -> Replay:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            fn()
        return graph.replay

    return capture, stream


def graphed(step: "FastStep") -> "FastStep | GraphedStep":
    """``step`` replayed from CUDA graphs on a CUDA device (unless ``ENABLED`` is off)."""
    return GraphedStep(step) if ENABLED and step.flat.is_cuda else step
