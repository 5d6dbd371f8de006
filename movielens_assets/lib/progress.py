"""Progress of one long statement (a big file's load or write), polled from a helper thread.

The engine reports a percentage (DuckDB's ``query_progress()``); a line is emitted at most once
per ``interval`` seconds and once per ``step`` percent, e.g.
``ratings: landing/ratings/ratings.csv: 40% (of 533,444,123 bytes) after 6.0 s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

DEFAULT_INTERVAL_SECONDS = 5.0
DEFAULT_STEP_PERCENT = 10.0
MAX_POLL_SECONDS = 1.0


@dataclass
class ProgressThrottle:
    """Which progress readings get a line: one per ``interval`` seconds and ``step`` percent."""

    interval: float = DEFAULT_INTERVAL_SECONDS
    step: float = DEFAULT_STEP_PERCENT
    last_elapsed: float = 0.0
    last_step: int = 0

    def due(self, percent: float, elapsed: float) -> bool:
        """Whether ``percent`` after ``elapsed`` seconds is worth a line (and remember it)."""
        if percent < 0 or elapsed - self.last_elapsed < self.interval:
            return False
        step = int(min(percent, 100.0) // self.step)
        if step <= self.last_step:
            return False
        self.last_elapsed, self.last_step = elapsed, step
        return True


def progress_line(label: str, percent: float, size_bytes: int | None, elapsed: float) -> str:
    """One line of progress; the size is left out when it is not known."""
    of = f" (of {size_bytes:,} bytes)" if size_bytes is not None else ""
    return f"{label}: {percent:.0f}%{of} after {elapsed:.1f} s"


@contextmanager
def logged_progress(
    read_percent: Callable[[], float],
    label: str,
    size_bytes: int | None,
    emit: Callable[[str], None],
    interval: float = DEFAULT_INTERVAL_SECONDS,
    step: float = DEFAULT_STEP_PERCENT,
) -> Iterator[None]:
    """Emit (log, print) the progress ``read_percent()`` reports while the ``with`` block runs.

    ``read_percent`` returns 0-100, or a negative number while the engine cannot tell.
    """
    throttle = ProgressThrottle(interval, step)
    started = time.monotonic()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(min(MAX_POLL_SECONDS, interval / 2)):
            try:
                percent = read_percent()
            except Exception:  # noqa: BLE001 - progress is best effort; the load reports errors
                return
            elapsed = time.monotonic() - started
            if throttle.due(percent, elapsed):
                emit(progress_line(label, percent, size_bytes, elapsed))

    watcher = threading.Thread(target=watch, name=f"progress of {label}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
