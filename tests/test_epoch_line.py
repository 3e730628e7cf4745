"""mrcnn.epoch_line: one line an epoch with its time, the ETA and the losses."""

from __future__ import annotations

import io

import pytest

from mrcnn.epoch_line import EpochLine
from mrcnn.progress import format_duration


class Clock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_epochs(durations, total, first_epoch=0, logs=None):
    clock, out = Clock(), io.StringIO()
    line = EpochLine(stream=out, clock=clock)
    line.set_params({"epochs": total, "steps": 5})
    line.on_train_begin()
    for i, seconds in enumerate(durations):
        line.on_epoch_begin(first_epoch + i)
        clock.now += seconds
        line.on_epoch_end(first_epoch + i, logs or {"loss": 1.23456, "rpn_class_loss": 0.5})
    return out.getvalue().splitlines()


def test_each_epoch_writes_one_line_with_time_eta_and_losses():
    lines = run_epochs([12.0, 8.0], total=4)
    assert lines == [
        "Epoch 1/4 - 12 s - ETA 36 s - loss: 1.2346 - rpn_class_loss: 0.5000",
        # mean of 12 and 8 s, times the two epochs left
        "Epoch 2/4 - 8.0 s - ETA 20 s - loss: 1.2346 - rpn_class_loss: 0.5000",
    ]


def test_a_resumed_call_counts_from_its_first_epoch_and_the_last_says_done():
    lines = run_epochs([30.0, 90.0], total=12, first_epoch=10)
    assert lines[0].startswith("Epoch 11/12 - 30 s - ETA 30 s")
    assert lines[1].startswith("Epoch 12/12 - 1 min 30 s - done")


def test_values_that_are_not_numbers_are_left_out():
    (line,) = run_epochs([1.0], total=1, logs={"loss": 2.0, "note": "text", "lr": None})
    assert line == "Epoch 1/1 - 1.0 s - done - loss: 2.0000"


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0 s"), (9.96, "10.0 s"), (42.4, "42 s"),
                                           (425, "7 min 5 s"), (7380, "2 h 3 min")])
def test_durations_read_at_a_glance(seconds, text):
    assert format_duration(seconds) == text
