"""Training's progress in a log: one line an epoch with its time, the ETA and the losses
(``MaskRCNN.train`` with ``verbose=2``, what ``progress_verbosity`` picks when stdout is not a
terminal)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import keras

from mrcnn.progress import format_duration


class EpochLine(keras.callbacks.Callback):
    """One line an epoch, for logs (stdout not a terminal): the epoch, its time, the ETA of
    this ``fit`` call and every loss, e.g.
    ``Epoch 3/48 - 12.1 s - ETA 9 min 5 s - loss: 1.2345 - rpn_class_loss: 0.0213 - ...``.

    Keras' own ``verbose=2`` writes two lines an epoch and no ETA. The ETA is the mean epoch
    time of this call so far times the epochs left.
    """

    def __init__(self, stream: TextIO | None = None, clock=time.monotonic) -> None:
        super().__init__()
        self.stream = stream
        self.clock = clock
        self._durations: list[float] = []
        self._start = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._durations = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._start = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._durations.append(self.clock() - self._start)
        total = int(self.params.get("epochs", epoch + 1))
        left = max(0, total - (epoch + 1))
        eta = sum(self._durations) / len(self._durations) * left
        parts = [f"Epoch {epoch + 1}/{total}", format_duration(self._durations[-1]),
                 f"ETA {format_duration(eta)}" if left else "done"]
        parts += [f"{name}: {float(value):.4f}" for name, value in (logs or {}).items()
                  if _is_number(value)]
        stream = self.stream or sys.stdout
        stream.write(" - ".join(parts) + "\n")
        stream.flush()


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
