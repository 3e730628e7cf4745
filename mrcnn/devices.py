"""Which devices training runs on: a GPU count turned into visible devices, a ``tf.distribute``
strategy and the config's GPU_COUNT.

``gpus`` is None (TensorFlow's own placement, nothing changed), 0 (the CPU only: every GPU
hidden), 1 (the first GPU only) or N > 1 (``MirroredStrategy`` over the first N GPUs, one
replica each, GPU_COUNT = N so that the global batch is IMAGES_PER_GPU x N). GPUs beyond those
asked for are hidden, because TensorFlow reserves memory on every GPU it sees.

``plan_devices`` and ``gpu_count_overrides`` decide without TensorFlow's devices (a machine
without GPUs tests them); ``strategy_for_gpus`` applies the plan and must run before TensorFlow
runs its first op, since the visible devices are fixed from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevicePlan:
    """``visible_gpus``: how many of the first GPUs stay visible (None: leave TensorFlow's
    default); ``replicas``: the GPU_COUNT it implies (None: the config's); ``mirrored``:
    whether a MirroredStrategy spreads the batch over them."""

    visible_gpus: int | None
    replicas: int | None
    mirrored: bool


def plan_devices(gpus: int | None, available: int) -> DevicePlan:
    """The plan for ``gpus`` GPUs when TensorFlow sees ``available``."""
    if gpus is None:
        return DevicePlan(visible_gpus=None, replicas=None, mirrored=False)
    if gpus < 0:
        raise ValueError(f"gpus must be 0 (CPU only), 1 or more, got {gpus}")
    if gpus > available:
        raise ValueError(f"asked for {gpus} GPU(s), but TensorFlow sees {available} (the "
                         "driver, CUDA_VISIBLE_DEVICES or a tensorflow-cpu install decide "
                         "what it sees)")
    return DevicePlan(visible_gpus=gpus, replicas=max(gpus, 1), mirrored=gpus > 1)


def gpu_count_overrides(gpus: int | None, overrides: Mapping[str, Any]) -> dict[str, int]:
    """The GPU_COUNT override that ``gpus`` implies ({} when None); an explicit GPU_COUNT in
    ``overrides`` must agree with it, else the batch would be split over replicas that do not
    exist, or left unsplit."""
    if gpus is None:
        return {}
    replicas = max(int(gpus), 1)
    given = overrides.get("GPU_COUNT")
    if given is not None and given != replicas:
        raise ValueError(f"GPU_COUNT={given} contradicts {gpus} GPU(s), which train "
                         f"{replicas} replica(s): leave GPU_COUNT out or set it to {replicas}")
    return {"GPU_COUNT": replicas}


def strategy_for_gpus(gpus: int | None) -> tf.distribute.Strategy | None:
    """Apply ``plan_devices`` to this process: hide the GPUs not asked for and return the
    MirroredStrategy of N > 1 GPUs, or None (build under TensorFlow's default strategy)."""
    physical = tf.config.list_physical_devices("GPU")
    plan = plan_devices(gpus, len(physical))
    if plan.visible_gpus is None:
        return None
    wanted = physical[:plan.visible_gpus]
    if tf.config.get_visible_devices("GPU") != wanted:
        tf.config.set_visible_devices(wanted, "GPU")
    logger.info("training on %s", ", ".join(d.name for d in wanted) or "the CPU only")
    return replica_strategy(plan.replicas, "GPU") if plan.mirrored else None


def replica_strategy(replicas: int, device_type: str = "GPU") -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy with one replica on each of the first ``replicas`` logical devices
    of ``device_type`` (GPU; CPU where a CPU is split into logical devices)."""
    devices = [d.name for d in tf.config.list_logical_devices(device_type)[:replicas]]
    if len(devices) < replicas:
        raise ValueError(f"{replicas} replicas need {replicas} {device_type} devices; "
                         f"TensorFlow has {len(devices)}")
    return tf.distribute.MirroredStrategy(devices)
