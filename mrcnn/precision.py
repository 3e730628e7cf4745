"""Mixed precision: the convolutions compute in bfloat16 or float16, geometry stays float32.

``Config.MIXED_PRECISION`` names a Keras dtype policy (``"mixed_bfloat16"``, ``"mixed_float16"``)
or is None for float32. The policy applies while the model is built (``precision_scope``), so
every layer created then computes in the reduced type and keeps float32 variables; the global
policy is restored afterwards, so one model's setting never leaks into another.

What stays float32, whatever the policy:
- box geometry: proposals, ROI targets, ROIAlign's sampling, refinement, NMS and detection
  (layers derived from ``Float32Layer``): a bfloat16 coordinate has 8 significant bits, about
  2 px of error at 512 px;
- the layers that predict scores and deltas (``rpn_class_raw``, ``rpn_bbox_pred``,
  ``mrcnn_bbox_fc``, the class logits and ``mrcnn_mask``) and the losses.

``mixed_bfloat16`` suits CPUs with AVX-512 BF16 or AMX (about twice float32's convolution
throughput, see benchmarks/README.md) and recent GPUs; ``mixed_float16`` suits GPUs with tensor
cores, and Keras then wraps the optimizer in a ``LossScaleOptimizer`` (dynamic loss scaling),
which ``MaskRCNNTrainer.train_step`` honours through ``optimizer.scale_loss``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras

from mrcnn.config import MIXED_PRECISION_POLICIES as POLICIES

# The dtype of the layers that must not lose precision under a mixed policy.
FLOAT32 = "float32"


class Float32Layer(keras.layers.Layer):
    """A layer that computes in float32 under any policy (its float inputs are cast to float32
    on the way in). Base of the box-geometry layers."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)


@contextmanager
def precision_scope(policy: str | None) -> Iterator[None]:
    """Build layers under ``policy`` (None: float32), then restore the global policy."""
    if policy not in POLICIES:
        raise ValueError(f"mixed precision: policy must be one of {POLICIES}, got {policy!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy or FLOAT32)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
