"""mrcnn.heads: the box head's whole-input convolutions computed as one matrix product give what
a convolution gives (numpy and Keras' own Conv2D as references), for values and gradients, keep
Matterport's weight shapes, and fall back to a convolution where the kernel does not cover the
input."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.heads import WholeInputConv2D


def paired_layers(kernel_size: int, filters: int, channels: int, **kwargs):
    """WholeInputConv2D and a plain Conv2D holding the same random weights."""
    ours = WholeInputConv2D(filters, kernel_size, **kwargs)
    plain = keras.layers.Conv2D(filters, kernel_size, **kwargs)
    shape = (None, kernel_size, kernel_size, channels)
    ours.build(shape)
    plain.build(shape)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in plain.weights]
    ours.set_weights(weights)
    plain.set_weights(weights)
    return ours, plain, weights


@pytest.mark.parametrize(("kernel_size", "channels", "filters"), [(7, 5, 6), (1, 8, 4), (3, 2, 3)])
def test_whole_input_conv_equals_numpy_and_conv2d(kernel_size, channels, filters):
    ours, plain, (kernel, bias) = paired_layers(kernel_size, filters, channels, padding="valid",
                                                activation="relu")
    x = np.random.default_rng(1).normal(size=(4, kernel_size, kernel_size, channels))
    x = x.astype(np.float32)
    expected = np.maximum(np.einsum("nhwc,hwcf->nf", x, kernel) + bias, 0.0)
    got = np.asarray(ours(x))
    assert got.shape == (4, 1, 1, filters)
    np.testing.assert_allclose(got[:, 0, 0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, np.asarray(plain(x)), rtol=1e-5, atol=1e-5)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in plain.weights]


def test_whole_input_conv_gradients_equal_conv2d():
    ours, plain, _ = paired_layers(7, 6, 5, padding="valid")
    x = tf.constant(np.random.default_rng(2).normal(size=(3, 7, 7, 5)).astype(np.float32))

    def gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x, *layer.trainable_weights])

    for mine, theirs in zip(gradients(ours), gradients(plain), strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("padding", "input_shape", "output_shape"), [
    ("valid", (2, 6, 5, 2), (2, 4, 3, 4)),  # larger than the kernel
    ("same", (2, 3, 3, 2), (2, 3, 3, 4)),  # the kernel's size, but padded
])
def test_whole_input_conv_stays_a_convolution_otherwise(padding, input_shape, output_shape):
    ours, plain, _ = paired_layers(3, 4, 2, padding=padding)
    x = np.random.default_rng(3).normal(size=input_shape).astype(np.float32)
    got = np.asarray(ours(x))
    assert got.shape == output_shape
    np.testing.assert_allclose(got, np.asarray(plain(x)), rtol=1e-5, atol=1e-5)
