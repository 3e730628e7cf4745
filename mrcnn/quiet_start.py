"""Importing TensorFlow without its start-up lines.

TensorFlow 2.21 writes absl and oneDNN notices to the process's stderr while it loads ("All log
messages before absl::InitializeLog() is called ...", "oneDNN custom operations are on ...",
"This TensorFlow binary is optimized to use ..."). ``TF_CPP_MIN_LOG_LEVEL`` no longer holds
them back: they come before absl's logging is set up. ``import_tensorflow`` points file
descriptor 2 at a temporary file while TensorFlow loads and then writes back every line that
is not one of those notices, so an error raised during the import still shows.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from types import ModuleType

# The notices TensorFlow prints at every start, whatever the program does.
STARTUP_NOTICES = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^[IW]\d{4} [\d:. ]+\d+ \w+\.cc:\d+\] (oneDNN custom operations are on"
               r"|This TensorFlow binary is optimized)"),
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow"),
)


def is_startup_notice(line: str) -> bool:
    """True for a line TensorFlow prints at every start (not an error of this run)."""
    return any(pattern.match(line) for pattern in STARTUP_NOTICES)


def without_startup_notices(text: str) -> str:
    """``text`` with the start-up notices left out, every other line kept in order."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not is_startup_notice(line))


def import_tensorflow(show_startup_lines: bool = False) -> None:
    """Import TensorFlow (once a process); its start-up notices are dropped unless
    ``show_startup_lines``."""
    if show_startup_lines:
        importlib.import_module("tensorflow")
    else:
        import_without_notices("tensorflow")


def import_without_notices(name: str) -> ModuleType:
    """Import module ``name`` with what it writes to file descriptor 2 held back, then write
    that back without the start-up notices. A module imported before is returned as it is."""
    if name in sys.modules:
        return sys.modules[name]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            return importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            sys.stderr.write(without_startup_notices(held.read().decode(errors="replace")))
            sys.stderr.flush()
