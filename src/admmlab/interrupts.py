"""SIGINT/SIGTERM as KeyboardInterrupt, held back while a store write is under way.

Python raises a signal's exception between any two bytecodes. Raised inside
SQLAlchemy's session handling, it can leave a SQLite connection holding the
write lock, and the run's own KILLED record then waits on that lock forever.
So the entry point installs :func:`raise_interrupt`, and the tracking package
wraps each write in :func:`shielded`: a signal arriving inside is raised as
soon as the outermost shielded block ends.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_pending: int | None = None


def raise_interrupt(signum: int, frame: object) -> None:
    """Signal handler: KeyboardInterrupt now, or when the shielded block ends."""
    global _pending
    if _depth:
        _pending = signum
        return
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """Route SIGINT and SIGTERM through :func:`raise_interrupt` (main thread only)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_interrupt)


@contextmanager
def shielded() -> Iterator[None]:
    """Hold back interrupts for the block; raise a held one when it ends."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise KeyboardInterrupt(f"signal {signum}")
