"""Start-up: how long ``admmlab-train`` takes to answer when it has nothing to train.

    python benchmarks/startup.py [--quick] [--src PATH]

Times, in fresh interpreters, ``admmlab-train --help``, a refused value
(``model.width=-1``), a refused key (``model.wdth=3``) and a refused group option
(``solver=nope``) against ``python -c "import torch"``, interleaved and measured in
the same run; prints each one's median and its ratio to the torch import (the aim:
at most 1.5). ``--src`` runs another checkout's ``src`` (e.g. a worktree of an
earlier commit) to compare before and after.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchkit import parse_args, summary, table

HERE = Path(__file__).resolve().parent
TRAIN = ["-m", "admmlab.train"]
COMMANDS = {
    "import torch": ["-c", "import torch"],
    "admmlab-train --help": [*TRAIN, "--help"],
    "refused value (model.width=-1)": [*TRAIN, "model.width=-1"],
    "refused key (model.wdth=3)": [*TRAIN, "model.wdth=3"],
    "refused option (solver=nope)": [*TRAIN, "solver=nope"],
}


def extra(parser) -> None:
    parser.add_argument("--src", type=Path, help="the src folder of the checkout to time")


def seconds(arguments: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *arguments], env=env, cwd=cwd, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if arguments[0] == "-m" and arguments[-1] != "--help" and "error:" not in done.stderr:
        raise SystemExit(f"{arguments}: expected a one-line error, got {done.stderr[-300:]}")
    return elapsed


def main() -> None:
    args = parse_args(__doc__, extra)
    src = (args.src or HERE.parent / "src").resolve()
    env = {**os.environ, "PYTHONPATH": str(src)}
    repeats = 3 if args.quick else 7
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):  # interleaved: load changes hit every command alike
        for name, arguments in COMMANDS.items():
            times[name].append(seconds(arguments, env, src.parent))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["import torch"]
    print(f"Start-up of admmlab-train from {src} ({repeats} repeats, medians)")
    table(
        "",
        ["command", "seconds", "ratio to import torch"],
        [[name, t, t / base] for name, t in medians.items()],
    )
    ratios = {
        name.split(" (")[0].replace("admmlab-train ", "").replace(" ", "_"): t / base
        for name, t in medians.items()
        if name != "import torch"
    }
    summary("startup", **ratios, worst=max(ratios.values()))


if __name__ == "__main__":
    main()
