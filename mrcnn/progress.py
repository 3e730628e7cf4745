"""Progress output of long work, without TensorFlow (``synth`` and ``--help`` never load it):
what a user watching a terminal or reading a log sees."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    """'42 s', '7 min 5 s', '2 h 3 min': readable at a glance in a log."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Progress:
    """Counts the finished items of a long loop and shows the count on ``stream`` (default:
    stderr as it is at each write: progress is not a result, so stdout keeps the results).

    On a terminal (``stream.isatty()``) a bar is redrawn in place with ``\\r`` (at most every
    ``redraw_s`` seconds) and ended with a newline; log records written to the same stream
    meanwhile first clear the bar's line. Anywhere else (a log file, a pipe) a few plain lines:
    one at the start, one at each quarter passed, one at the end with the elapsed time. With
    ``show=False`` it writes nothing, so callers keep one code path for ``progress=False``::

        with Progress(len(items), "writing images", show=progress) as bar:
            for item in items:
                ...
                bar.update()
    """

    BAR_WIDTH = 30

    def __init__(self, total: int, what: str, show: bool = True, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, redraw_s: float = 0.1) -> None:
        self.total = max(0, int(total))
        self.what = what
        self.done = 0
        self.show = show
        self._stream = stream
        self._clock = clock
        self._redraw_s = redraw_s
        self._start = clock()
        self._last_draw = -float("inf")
        self._quarters = 0  # quarters already reported (plain lines)
        self._drawn = 0  # characters of the bar now on the terminal line
        self._closed = False
        self._tty = show and bool(getattr(self.stream, "isatty", lambda: False)())
        if self._tty:
            self._watch_log_handlers(True)
            self._draw()
        elif show:
            self._write(f"{what}: {self.total} to do\n")

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """``n`` more items are finished."""
        self.done += int(n)
        if not self.show or self._closed:
            return
        if self._tty:
            if self._clock() - self._last_draw >= self._redraw_s:
                self._draw()
        elif self.done < self.total:
            quarters = 4 * self.done // self.total
            if quarters > self._quarters:
                self._quarters = quarters
                self._write(f"{self.what}: {self._counts()}, {self._times()}\n")

    def close(self) -> None:
        """The last line: the bar at its final count and a newline, or the closing line."""
        if not self.show or self._closed:
            return
        self._closed = True
        elapsed = format_duration(self._clock() - self._start)
        if self._tty:
            self._draw(final=True)
            self._watch_log_handlers(False)
        elif self.done >= self.total:
            self._write(f"{self.what}: {self.done}/{self.total} done in {elapsed}\n")
        else:
            self._write(f"{self.what}: stopped at {self._counts()} after {elapsed}\n")

    # ------------------------------------------------------------------------- drawing
    def _counts(self) -> str:
        percent = 100 * min(self.done, self.total) // self.total if self.total else 100
        return f"{self.done}/{self.total} ({percent} %)"

    def _times(self) -> str:
        """The elapsed time, and the ETA at the mean time an item so far."""
        elapsed = self._clock() - self._start
        if not self.done:
            return format_duration(elapsed)
        eta = elapsed / self.done * max(0, self.total - self.done)
        return f"{format_duration(elapsed)}, ETA {format_duration(eta)}"

    def _draw(self, final: bool = False) -> None:
        fraction = min(self.done, self.total) / self.total if self.total else 1.0
        filled = int(round(fraction * self.BAR_WIDTH))
        bar = "#" * filled + "-" * (self.BAR_WIDTH - filled)
        times = (f"in {format_duration(self._clock() - self._start)}" if final
                 else self._times())
        text = f"{self.what} [{bar}] {self._counts()} {times}"
        # Spaces cover what is left of a longer earlier line.
        self._write("\r" + text + " " * max(0, self._drawn - len(text)) + ("\n" if final else ""))
        self._drawn = 0 if final else len(text)
        self._last_draw = self._clock()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    # ------------------------------------------------------------- log records meanwhile
    def _watch_log_handlers(self, on: bool) -> None:
        """While the bar is drawn, the root logger's handlers that write to our stream clear
        its line before a record, so that the record starts at the line's beginning."""
        for handler in logging.getLogger().handlers:
            if getattr(handler, "stream", None) is self.stream:
                if on:
                    handler.addFilter(self._clear_line)
                else:
                    handler.removeFilter(self._clear_line)

    def _clear_line(self, record: logging.LogRecord) -> bool:
        if self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
            self._last_draw = -float("inf")  # redraw at the next update
        return True
