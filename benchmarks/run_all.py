"""Run every benchmark in turn, each in its own process, then print a summary.

    python benchmarks/run_all.py [--quick] [--threads N]      (make bench)

``--quick`` is passed on to every script; ``--threads`` sets OMP_NUM_THREADS and
MKL_NUM_THREADS for them (on a busy machine, one thread gives steadier numbers for
the small nets: torch's worker threads wait for a free core at every operation).
Each script's output streams through; the summary lists each script's exit
status, wall time and the ``summary:`` lines it printed.
"""

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "startup.py",
    "admm_iteration.py",
    "sgd_epoch.py",
    "batched_trials.py",
    "tracking_overhead.py",
    "memory.py",
    "studies.py",
    "gpu_check.py",
)


@dataclass
class Outcome:
    script: str
    returncode: int
    seconds: float
    summaries: list[str] = field(default_factory=list)


def run_script(script: Path, quick: bool, env: dict[str, str]) -> Outcome:
    """Run one script, echoing its output, and keep its ``summary:`` lines."""
    command = [sys.executable, str(script), *(["--quick"] if quick else [])]
    print(f"\n===== {script.name} =====", flush=True)
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        summaries = []
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith("summary: "):
                summaries.append(line.removeprefix("summary: ").strip())
    return Outcome(script.name, process.returncode, time.perf_counter() - start, summaries)


def child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def print_summary(outcomes: list[Outcome]) -> None:
    print("\n===== summary =====")
    for o in outcomes:
        status = "ok" if o.returncode == 0 else f"FAILED (exit {o.returncode})"
        print(f"{o.script:<24}{status:<18}{o.seconds:8.1f} s")
        for line in o.summaries:
            print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets in every script")
    parser.add_argument("--threads", type=int, help="OMP/MKL threads for every script")
    args = parser.parse_args()
    env = child_env(args.threads)
    outcomes = [
        run_script(HERE / name, args.quick, env) for name in SCRIPTS if (HERE / name).is_file()
    ]
    print_summary(outcomes)
    sys.exit(max((o.returncode != 0 for o in outcomes), default=0))


if __name__ == "__main__":
    main()
