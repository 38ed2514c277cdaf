"""SIGINT/SIGTERM as KeyboardInterrupt, held back while a store write is under way.

Python raises a signal's exception between any two bytecodes. Raised inside
SQLAlchemy's session handling, it can leave a SQLite connection holding the
write lock, and the run's own KILLED record then waits on that lock forever.
So the entry point (and each job, in whatever process a launcher runs it)
installs :func:`raise_interrupt`, and the tracking package wraps each write in
:func:`shielded`: a signal arriving inside is raised as soon as the outermost
shielded block ends. A second signal while one is held is raised at once
(Ctrl-C twice, or a write that hangs on a remote store).

Raised outside a shielded block, the exception can land inside a finaliser
(``__del__``, a weakref callback), where Python prints "Exception ignored" and
drops it. So a signal stays on record until the code that handles its
KeyboardInterrupt calls :func:`clear`; until then the next shielded block's end,
or the next :func:`check` (each epoch), raises it once more.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_pending: int | None = None


def raise_interrupt(signum: int, frame: object) -> None:
    """Signal handler: KeyboardInterrupt when the shielded block ends, or now if
    outside one or if a signal is already held."""
    global _pending
    held = _pending is not None
    _pending = signum
    if _depth and not held:
        return
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """Route SIGINT and SIGTERM through :func:`raise_interrupt`; off the main thread,
    where Python cannot set handlers (and signals are not delivered), nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_interrupt)


def check() -> None:
    """Raise a signal that is on record, unless inside a shielded block."""
    global _pending
    if _depth == 0 and _pending is not None:
        signum, _pending = _pending, None
        raise KeyboardInterrupt(f"signal {signum}")


def clear() -> None:
    """The received signal's KeyboardInterrupt has reached the code that handles it."""
    global _pending
    _pending = None


@contextmanager
def shielded() -> Iterator[None]:
    """Hold back interrupts for the block; raise a held one when it ends."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        check()
