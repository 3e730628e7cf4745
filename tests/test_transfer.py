"""MaskWeightedTransfer against a numpy reference of the paper's eq. 5-6 and its pooling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ftmtl.transfer import MaskWeightedTransfer


def reference_transfer(theta4: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """M_w = max over the foreground maps; theta5 = theta4 * M_w; 2x2 max pool (stride 2,
    an odd last row/column dropped); mean over the pooled map. Loops, to stay independent."""
    b, n, h, w, c = theta4.shape
    out = np.zeros((b, n, c))
    for i in range(b):
        for j in range(n):
            weight = masks[i, j, :, :, 1:].max(axis=-1)
            theta5 = theta4[i, j] * weight[:, :, None]
            pooled = np.array([[theta5[2 * y:2 * y + 2, 2 * x:2 * x + 2].max(axis=(0, 1))
                                for x in range(w // 2)] for y in range(h // 2)])
            out[i, j] = pooled.mean(axis=(0, 1))
    return out


def random_inputs(rng, batch=2, rois=3, size=28, channels=5, classes=3):
    theta4 = rng.normal(size=(batch, rois, size, size, channels)).astype(np.float32)
    masks = rng.uniform(size=(batch, rois, size, size, classes)).astype(np.float32)
    return theta4, masks


@pytest.mark.parametrize("size,classes", [(28, 3), (28, 2), (7, 4)])
def test_transfer_matches_the_numpy_reference(size, classes):
    theta4, masks = random_inputs(np.random.default_rng(size + classes), size=size,
                                  classes=classes)
    out = MaskWeightedTransfer()([tf.constant(theta4), tf.constant(masks)]).numpy()
    assert out.shape == (2, 3, 5)
    np.testing.assert_allclose(out, reference_transfer(theta4, masks), rtol=1e-5, atol=1e-6)


def test_background_map_is_ignored_and_foreground_maps_weight_the_features():
    theta4, masks = random_inputs(np.random.default_rng(1))
    layer = MaskWeightedTransfer()
    base = layer([theta4, masks]).numpy()
    other_background = masks.copy()
    other_background[..., 0] = 1.0 - other_background[..., 0]
    np.testing.assert_allclose(layer([theta4, other_background]).numpy(), base, rtol=1e-6)
    zero_foreground = masks.copy()
    zero_foreground[..., 1:] = 0.0
    np.testing.assert_array_equal(layer([theta4, zero_foreground]).numpy(), 0.0)


def test_transfer_has_no_weights_and_works_in_a_functional_graph():
    theta4 = keras.Input((4, 28, 28, 8))
    masks = keras.Input((4, 28, 28, 3))
    layer = MaskWeightedTransfer(name="mrcnn_ftmtl_transfer")
    out = layer([theta4, masks])
    assert tuple(out.shape) == (None, 4, 8)
    model = keras.Model([theta4, masks], out)
    assert layer.weights == [] and model.count_params() == 0
    a, m = random_inputs(np.random.default_rng(2), rois=4, channels=8)
    np.testing.assert_allclose(model.predict([a, m], verbose=0), reference_transfer(a, m),
                               rtol=1e-5, atol=1e-6)


def test_gradient_reaches_both_inputs_unless_stopped():
    theta4, masks = (tf.constant(x) for x in random_inputs(np.random.default_rng(3)))
    for stop, expect_gradient in ((False, True), (True, False)):
        layer = MaskWeightedTransfer(stop_gradient=stop)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([theta4, masks])
            total = tf.reduce_sum(layer([theta4, masks]) ** 2)
        for source in (theta4, masks):
            grad = tape.gradient(total, source)
            has_gradient = grad is not None and bool(np.any(grad.numpy() != 0))
            assert has_gradient is expect_gradient
        # The background map never gets a gradient: M_w does not read it.
        if not stop:
            assert not np.any(tape.gradient(total, masks).numpy()[..., 0])
        del tape
    # Stopping the gradient leaves the forward values unchanged.
    np.testing.assert_array_equal(
        MaskWeightedTransfer(stop_gradient=True)([theta4, masks]).numpy(),
        MaskWeightedTransfer()([theta4, masks]).numpy())


def test_transfer_config_round_trips():
    layer = MaskWeightedTransfer(stop_gradient=True, name="t")
    clone = MaskWeightedTransfer.from_config(layer.get_config())
    assert clone.stop_gradient is True and clone.name == "t"
