"""What a run shows while it trains: a progress bar with its ETA on a terminal, plain
periodic lines elsewhere (job logs, CI), and every line in Hydra's job log too.

A bar only where one process owns the terminal: jobs of a parallel launcher (joblib,
Ray, submitit) print lines, so bars never interleave.
"""

import logging
import math
import sys
import time
from typing import TextIO

from tqdm import tqdm

LINES = 10  # plain progress lines over a run, at most
EVERY_S = 60.0  # and one at least this often


def to_job_log(message: str) -> None:
    """Write ``message`` to the file handlers of the root logger (Hydra's ``train.log``
    in a Hydra job) only: the console already shows it."""
    record = logging.LogRecord("admmlab", logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def say(message: str, stream: TextIO | None = None) -> None:
    """Print a line (stdout by default) and keep it in the job log."""
    print(message, file=stream or sys.stdout, flush=True)
    to_job_log(message)


class Progress:
    """Per-epoch progress of one setting: ``update`` after each epoch with its metrics."""

    def __init__(self, epochs: int, label: str, metric: str, *, bar: bool) -> None:
        self.epochs, self.label, self.metric = epochs, label, metric
        self.start: float | None = None  # the end of the first epoch: ETA from the later ones
        self.last_line = time.monotonic()
        self.every = max(1, math.ceil(epochs / LINES))
        self.bar = (
            tqdm(total=epochs, desc=label, unit="epoch", file=sys.stderr, leave=False)
            if bar
            else None
        )

    def update(self, epoch: int, values: dict[str, list[float]]) -> None:
        current = _best(values.get(self.metric, []))
        if self.bar is not None:
            self.bar.update(epoch - self.bar.n)
            self.bar.set_postfix_str(f"{self.metric}={current:.3e}", refresh=False)
        now = time.monotonic()
        if self.start is None:
            self.start, self.first = now, epoch
        due = epoch % self.every == 0 or now - self.last_line >= EVERY_S
        if due and epoch < self.epochs:
            self.last_line = now
            line = self.line(epoch, current, now - self.start)
            if self.bar is None:
                say(line, sys.stderr)
            else:
                to_job_log(line)

    def line(self, epoch: int, current: float, elapsed: float) -> str:
        done = epoch - self.first
        eta = _clock(elapsed / done * (self.epochs - epoch)) if done else "–"
        return (
            f"[admmlab] {self.label}: epoch {epoch}/{self.epochs} "
            f"({100 * epoch / self.epochs:.0f}%), {_clock(elapsed)} elapsed, ETA {eta}, "
            f"{self.metric} {current:.3e}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _best(values: list[float]) -> float:
    """The best value over the trials still finite (NaN if none is)."""
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.nan


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
