"""Peak memory of an ADMM run against the bytes of its iterates and data.

    python benchmarks/memory.py [--quick]

Depth 2, width 300, N = 10000 (``--quick``: N = 2000), float64, 5 iterations, each
measured in a fresh subprocess: the resident set after importing torch and
admmlab and building the data is the baseline; the peak (VmHWM, reset just before
the run) during ``admmlab.solvers.admm.fit`` is compared with the bytes of all
W, V, U plus X and Y. It is measured twice, under glibc's default allocator policy
(``ADMMLAB_MMAP_THRESHOLD=0``) and under admmlab's, the fixed 4 MiB mmap threshold
set at import (admmlab.allocator: arrays over 4 MiB go back to the system when
freed), with the seconds per iteration of each. An iteration takes its ``n × N``
temporaries from a pool it reuses, so the two should agree in memory and time: a
gap means that something allocates such arrays per iteration.
Then the growth of a long SGD run: the resident set of the tuned SGD (sigmoid)
setting ((2, 60), K = 20, the autograd step) between epoch 10 and the last, per
epoch, under both policies, with the seconds per epoch of each.
A third subprocess follows every tensor the run allocates and prints which ones
are alive at the moment of the largest total, by the line of admmlab that made
them: the allocations to remove if the ratio is too high.
"""

import itertools
import json
import os
import subprocess
import sys
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchkit import header, parse_args, summary, table

Tensor = torch.Tensor
MiB = 2**20
ADMM = {"lam": 1e-6, "beta": 1.0, "activation": "sigmoid"}
POLICIES = {"glibc default": {"ADMMLAB_MMAP_THRESHOLD": "0"}, "admmlab": {}}


@dataclass
class Setting:
    depth: int = 2
    width: int = 300
    n_samples: int = 10000
    epochs: int = 5

    def dims(self) -> list[int]:
        return [1, *[self.width] * self.depth, 1]

    def args(self) -> list[str]:
        return [str(v) for v in (self.depth, self.width, self.n_samples, self.epochs)]


def iterate_and_data_bytes(setting: Setting, itemsize: int = 8) -> int:
    """All W_i, V_i, U_i (V and U: ``n_i × N`` for i = 1..L+1) plus X and Y."""
    dims = setting.dims()
    weights = sum(n_out * (n_in + 1) for n_in, n_out in itertools.pairwise(dims))
    v_and_u = 2 * sum(dims[1:]) * setting.n_samples
    data = (dims[0] + dims[-1]) * setting.n_samples
    return (weights + v_and_u + data) * itemsize


def _problem(setting: Setting) -> tuple[Tensor, Tensor, list[Tensor]]:
    from admmlab.nets import init_weights

    g = torch.Generator().manual_seed(0)
    x = torch.rand(setting.n_samples, 1, generator=g, dtype=torch.float64) * 2 - 1
    weights = init_weights("msra", setting.dims(), scale=8.0, generator=g)
    return x, x**2, weights


# ---------------------------------------------------------------- resident set (child)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux ≥ 4.0); say whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure_rss(setting: Setting) -> dict[str, float]:
    """Baseline and peak resident bytes of one ``admm.fit`` in this process."""
    from admmlab.solvers import admm

    x, y, weights = _problem(setting)
    baseline = _status_kib("VmRSS") * 1024
    reset = _reset_peak()
    start = time.perf_counter()
    admm.fit(x, y, weights, epochs=setting.epochs, **ADMM)
    seconds = (time.perf_counter() - start) / setting.epochs
    # Without a reset, ru_maxrss (the lifetime peak) stands in for the run's peak.
    peak = _status_kib("VmHWM") * 1024 if reset else _lifetime_peak()
    return {"baseline": baseline, "peak": peak, "peak_was_reset": reset, "seconds": seconds}


def _lifetime_peak() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_growth(setting: Setting) -> dict[str, float]:
    """Resident-set growth per epoch of a long SGD run (``setting.epochs`` epochs)."""
    from admmlab.data import load_dataset
    from admmlab.nets import init_weights
    from admmlab.solvers import sgd

    k = 20
    d = load_dataset("square", seed=0, n_train=1000, n_test=1000, noise_std=0.0, val_fraction=0.0)
    ws = [
        init_weights(
            "xavier", [1, 60, 60, 1], scale=8.6, generator=torch.Generator().manual_seed(s)
        )
        for s in range(k)
    ]
    w = [torch.stack(layer) for layer in zip(*ws, strict=True)]
    x, y = d.x_train.expand(k, -1, -1), d.y_train.expand(k, -1, -1)
    seen: dict[int, tuple[float, float]] = {}

    def record(epoch: int, _metrics) -> None:
        seen[epoch] = (_status_kib("VmRSS") * 1024, time.perf_counter())

    sgd.fit(x, y, w, method="sgd", lr=0.042, lr_gamma=0.9989, epochs=setting.epochs,
            activation="sigmoid", seeds=list(range(k)), X_test=x, Y_test=y, callback=record,
            impl="reference")  # fmt: skip
    (rss0, t0), (rss1, t1) = seen[10], seen[setting.epochs]
    epochs = setting.epochs - 10
    return {"growth_per_epoch": (rss1 - rss0) / epochs, "seconds": (t1 - t0) / epochs}


# ---------------------------------------------------------------- live tensors (child)


class LiveTensors(TorchDispatchMode):
    """Follows the storages that operations allocate, and the set alive at the peak.

    A storage counts from the first operation that returns it until its last tensor
    is freed; views and in-place results of storages made before the mode add
    nothing. Each storage is labelled with the innermost admmlab line that made it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list] = {}  # data_ptr -> [tensor count, bytes, label]
        self.current = self.peak = 0
        self.at_peak: list[tuple[int, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and t.device.type != "meta":
                self._follow(t, fresh=not func.is_view and id(t) not in inputs)
        return out

    def _follow(self, t: Tensor, fresh: bool) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self.live:
            if not fresh or storage.nbytes() == 0:
                return
            self.live[key] = [0, storage.nbytes(), _admmlab_line()]
            self.current += storage.nbytes()
            if self.current > self.peak:
                self.peak = self.current
                self.at_peak = [(entry[1], entry[2]) for entry in self.live.values()]
        self.live[key][0] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[key]


def _admmlab_line() -> str:
    """``file:function:line`` of the innermost admmlab frame on the stack."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if "/admmlab/" in path:
            return f"{Path(path).name}:{frame.f_code.co_name}:{frame.f_lineno}"
        frame = frame.f_back
    return "outside admmlab"


def trace_live(setting: Setting) -> dict[str, object]:
    """Peak of live tensor bytes during ``admm.fit`` and who holds them then."""
    from admmlab.solvers import admm

    x, y, weights = _problem(setting)
    mode = LiveTensors()
    with mode:
        admm.fit(x, y, weights, epochs=setting.epochs, **ADMM)
    by_line: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for nbytes, label in mode.at_peak:
        by_line[label][0] += nbytes
        by_line[label][1] += 1
    return {"peak": mode.peak, "at_peak": sorted(by_line.items(), key=lambda kv: -kv[1][0])}


# ---------------------------------------------------------------- parent


CHILD_TASKS: dict[str, Callable[[Setting], dict]] = {
    "rss": measure_rss,
    "trace": trace_live,
    "growth": measure_growth,
}


def in_subprocess(task: str, setting: Setting, env: dict[str, str] | None = None) -> dict:
    """Run a child task in a fresh interpreter, so imports and earlier runs do not count."""
    command = [sys.executable, __file__, "--child", task, *setting.args()]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(setting: Setting, policies: dict[str, dict], trace: dict) -> float:
    """Print the resident and live peaks; return the default policy's ratio."""
    own = iterate_and_data_bytes(setting)
    ratios = {name: (rss["peak"] - rss["baseline"]) / own for name, rss in policies.items()}
    print(
        f"\nADMM, depth {setting.depth}, width {setting.width}, N = {setting.n_samples}, "
        f"float64, {setting.epochs} iterations: iterates + data (W, V, U, X, Y) = "
        f"{own / MiB:.1f} MiB"
    )
    table(
        "Peak resident set beyond the baseline, per allocator policy",
        ["policy", "baseline MiB", "peak MiB", "(peak − baseline) / own", "s / iteration"],
        [
            (name + ("" if rss["peak_was_reset"] else " (lifetime peak)"), rss["baseline"] / MiB,
             rss["peak"] / MiB, ratios[name], rss["seconds"])
            for name, rss in policies.items()
        ],
    )  # fmt: skip
    print(f"  live tensors at their peak (traced): {trace['peak'] / MiB:.1f} MiB, "
          f"{trace['peak'] / own:.2f} × own  (target for the resident ratio: ≤ 2.5)")  # fmt: skip
    rows = [(label, nbytes / MiB, count) for label, (nbytes, count) in trace["at_peak"]]
    table(
        "Tensors alive at the peak, by the admmlab line that allocated them",
        ["allocated at", "MiB", "tensors"],
        rows,
    )
    default, ours = policies["glibc default"], policies["admmlab"]
    summary(
        "memory",
        ratio=ratios["admmlab"],
        glibc_default_ratio=ratios["glibc default"],
        live_ratio=trace["peak"] / own,
        admmlab_over_default_time=ours["seconds"] / default["seconds"],
    )
    return ratios["admmlab"]


def report_growth(setting: Setting, growth: dict[str, dict]) -> None:
    table(
        f"SGD (sigmoid) (2, 60), K = 20, autograd step, epochs 10–{setting.epochs}",
        ["policy", "MiB / epoch", "s / epoch"],
        [(name, g["growth_per_epoch"] / MiB, g["seconds"]) for name, g in growth.items()],
    )
    default, ours = growth["glibc default"], growth["admmlab"]
    summary(
        "long_run_growth",
        glibc_default_mib_per_epoch=default["growth_per_epoch"] / MiB,
        admmlab_mib_per_epoch=ours["growth_per_epoch"] / MiB,
        admmlab_over_default_time=ours["seconds"] / default["seconds"],
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        setting = Setting(*(int(v) for v in sys.argv[3:7]))
        print(json.dumps(CHILD_TASKS[sys.argv[2]](setting)))
        return
    args = parse_args(__doc__)
    header("Peak memory of admmlab.solvers.admm.fit")
    setting = Setting(n_samples=2000 if args.quick else 10000)
    policies = {name: in_subprocess("rss", setting, env) for name, env in POLICIES.items()}
    report(setting, policies, in_subprocess("trace", setting))
    long_run = Setting(epochs=40 if args.quick else 100)
    growth = {name: in_subprocess("growth", long_run, env) for name, env in POLICIES.items()}
    report_growth(long_run, growth)


if __name__ == "__main__":
    main()
