"""Learning-rate schedules: linear warm-up, then constant, cosine or step decay.

Training from random weights needs both ends: a warm-up, so the first large gradients of an
untrained network do not throw the weights far off (Goyal et al. 2017), and a decay, so the
last steps settle instead of bouncing at the full rate. detectron2's solver does the same
(WarmupMultiStepLR, WarmupCosineLR). The schedule is a function of the optimizer's iteration
count within one ``MaskRCNN.train`` call.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

DECAYS = ("constant", "cosine", "step")
# "step" decay: the rate drops by STEP_FACTOR at these fractions of the decay phase
# (detectron2's 3x schedule drops at 210k and 250k of 270k iterations: 0.78 and 0.93).
STEP_FRACTIONS = (0.75, 0.92)
STEP_FACTOR = 0.1
# The warm-up starts at this fraction of the base rate.
WARMUP_START_FACTOR = 0.001


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``base_rate`` reached linearly over ``warmup_steps``, then decayed over the remaining
    ``total_steps - warmup_steps`` steps (constant, cosine to ``final_factor * base_rate``, or
    steps of STEP_FACTOR at STEP_FRACTIONS). Past ``total_steps`` the last value holds."""

    def __init__(self, base_rate: float, total_steps: int, warmup_steps: int = 0,
                 decay: str = "cosine", final_factor: float = 0.0) -> None:
        if decay not in DECAYS:
            raise ValueError(f"WarmupDecay: decay must be one of {DECAYS}, got {decay!r}")
        if not base_rate > 0:
            raise ValueError(f"WarmupDecay: base_rate must be > 0, got {base_rate}")
        if int(total_steps) < 1 or int(warmup_steps) < 0:
            raise ValueError(f"WarmupDecay: need total_steps >= 1 and warmup_steps >= 0, got "
                             f"{total_steps} and {warmup_steps}")
        self.base_rate = float(base_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = min(int(warmup_steps), self.total_steps)
        self.decay = decay
        self.final_factor = float(final_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
        if self.decay == "cosine":
            factor = self.final_factor + (1.0 - self.final_factor) * 0.5 * (
                1.0 + tf.cos(math.pi * progress))
        elif self.decay == "step":
            drops = tf.add_n([tf.cast(progress >= f, tf.float32) for f in STEP_FRACTIONS])
            factor = tf.pow(STEP_FACTOR, drops)
        else:
            factor = tf.constant(1.0)
        if self.warmup_steps > 0:
            ramp = WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * tf.minimum(
                step / warmup, 1.0)
            factor = tf.where(step < warmup, ramp, factor)
        return self.base_rate * factor

    def __repr__(self) -> str:
        """Read in the training log: '0.001 with 200 warm-up steps, cosine over 2400 steps'."""
        return (f"{self.base_rate:g} with {self.warmup_steps} warm-up steps, {self.decay} "
                f"over {self.total_steps} steps")

    def get_config(self) -> dict:
        return {"base_rate": self.base_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay": self.decay,
                "final_factor": self.final_factor}


def learning_rate_schedule(base_rate: float, total_steps: int, warmup_steps: int = 0,
                           decay: str = "constant"):
    """The plain number when there is neither warm-up nor decay (Matterport's behaviour),
    else a WarmupDecay."""
    if decay not in DECAYS:
        raise ValueError(f"learning-rate decay must be one of {DECAYS}, got {decay!r}")
    if int(warmup_steps) <= 0 and decay == "constant":
        return float(base_rate)
    return WarmupDecay(base_rate, max(int(total_steps), 1), int(warmup_steps), decay)
