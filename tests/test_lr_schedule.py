"""Learning-rate schedules: warm-up, cosine and step decay against hand-worked values, and the
schedule MaskRCNN.train builds from the config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tiny_config import TinyConfig

from mrcnn.lr_schedule import (
    STEP_FACTOR,
    WARMUP_START_FACTOR,
    WarmupDecay,
    learning_rate_schedule,
)
from mrcnn.model import MaskRCNN
from samples.shapes.shapes import ShapesDataset


def rate(schedule, step: int) -> float:
    return float(schedule(step))


def test_no_warmup_and_no_decay_is_the_plain_number():
    assert learning_rate_schedule(0.01, 100) == 0.01
    assert isinstance(learning_rate_schedule(0.01, 100, warmup_steps=5), WarmupDecay)
    assert isinstance(learning_rate_schedule(0.01, 100, decay="cosine"), WarmupDecay)


def test_linear_warmup_then_constant():
    schedule = WarmupDecay(0.1, total_steps=100, warmup_steps=10, decay="constant")
    assert rate(schedule, 0) == pytest.approx(0.1 * WARMUP_START_FACTOR)
    half = WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) * 0.5
    assert rate(schedule, 5) == pytest.approx(0.1 * half)
    assert rate(schedule, 10) == pytest.approx(0.1)
    assert rate(schedule, 99) == pytest.approx(0.1)


def test_cosine_decay_after_the_warmup():
    schedule = WarmupDecay(0.2, total_steps=110, warmup_steps=10, decay="cosine")
    # 100 decay steps: cos at progress 0, 1/4, 1/2, 1.
    assert rate(schedule, 10) == pytest.approx(0.2)
    assert rate(schedule, 35) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert rate(schedule, 60) == pytest.approx(0.1)
    assert rate(schedule, 110) == pytest.approx(0.0, abs=1e-9)
    assert rate(schedule, 500) == pytest.approx(0.0, abs=1e-9)  # the last value holds
    values = [rate(schedule, s) for s in range(10, 111)]
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:], strict=False))


def test_cosine_to_a_floor():
    schedule = WarmupDecay(1.0, total_steps=10, decay="cosine", final_factor=0.1)
    assert rate(schedule, 0) == pytest.approx(1.0)
    assert rate(schedule, 10) == pytest.approx(0.1)


def test_step_decay_drops_at_the_fractions():
    schedule = WarmupDecay(1.0, total_steps=100, decay="step")
    assert rate(schedule, 74) == pytest.approx(1.0)
    assert rate(schedule, 75) == pytest.approx(STEP_FACTOR)
    assert rate(schedule, 91) == pytest.approx(STEP_FACTOR)
    assert rate(schedule, 92) == pytest.approx(STEP_FACTOR ** 2)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="decay must be one of"):
        WarmupDecay(0.1, 10, decay="linear")
    with pytest.raises(ValueError, match="base_rate must be > 0"):
        WarmupDecay(0.0, 10)
    with pytest.raises(ValueError, match="total_steps >= 1"):
        WarmupDecay(0.1, 0)
    with pytest.raises(ValueError, match="decay must be one of"):
        learning_rate_schedule(0.1, 10, decay="exp")


def test_config_round_trip():
    schedule = WarmupDecay(0.3, 50, 5, "step", 0.2)
    again = WarmupDecay(**schedule.get_config())
    assert [rate(again, s) for s in (0, 3, 30, 49)] == pytest.approx(
        [rate(schedule, s) for s in (0, 3, 30, 49)])


class Scheduled(TinyConfig):
    NAME = "lr"
    STEPS_PER_EPOCH = 2
    LR_WARMUP_STEPS = 3
    LR_DECAY = "cosine"
    MASK_HEAD_CHANNELS = 8


def test_train_follows_the_configs_schedule_over_its_own_steps(tmp_path):
    dataset = ShapesDataset()
    dataset.load_shapes(4, 64, 64, seed=2)
    dataset.prepare()
    model = MaskRCNN("training", Scheduled(), tmp_path)
    model.train(dataset, None, learning_rate=0.01, epochs=2, layers="heads", verbose=0)
    optimizer = model.keras_model.optimizer
    schedule = optimizer._learning_rate
    assert isinstance(schedule, WarmupDecay)
    assert (schedule.total_steps, schedule.warmup_steps, schedule.decay) == (4, 3, "cosine")
    assert int(optimizer.iterations.numpy()) == 4
    # The next call (epochs 2 -> 3) gets its own schedule over its 2 steps; the arguments win.
    model.train(dataset, None, learning_rate=0.02, epochs=3, layers="heads", verbose=0,
                lr_warmup_steps=0, lr_decay="step")
    schedule = model.keras_model.optimizer._learning_rate
    assert (schedule.total_steps, schedule.warmup_steps, schedule.decay) == (2, 0, "step")
    assert np.isclose(schedule.base_rate, 0.02)
    assert model.call_start_epoch == 2


def test_the_training_log_reads_the_schedule():
    schedule = WarmupDecay(0.001, total_steps=2400, warmup_steps=200, decay="cosine")
    assert repr(schedule) == "0.001 with 200 warm-up steps, cosine over 2400 steps"
