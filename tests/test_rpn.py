"""RPN head structure and the proposal layer on hand-made anchors."""

import numpy as np
import tensorflow as tf

from mrcnn.rpn import ProposalLayer, build_rpn_model


def test_rpn_model_names_and_shapes():
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=8)
    assert rpn.name == "rpn_model"
    names = {layer.name for layer in rpn.layers if layer.weights}
    assert names == {"rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"}
    logits, probs, bbox = rpn(np.zeros((2, 4, 5, 8), np.float32))
    assert logits.shape == (2, 4 * 5 * 3, 2) and bbox.shape == (2, 60, 4)
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-6)


def test_proposals_sorted_nms_and_padding():
    anchors = np.array([
        [0.1, 0.1, 0.3, 0.3],
        [0.1, 0.1, 0.31, 0.3],  # overlaps anchor 0 heavily
        [0.5, 0.5, 0.7, 0.7],
        [0.8, 0.8, 0.9, 0.9],
    ], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.1], np.float32)
    probs = np.stack([1 - scores, scores], -1)[None]
    deltas = np.zeros((1, 4, 4), np.float32)
    layer = ProposalLayer(proposal_count=5, nms_threshold=0.7, pre_nms_limit=3,
                          bbox_std_dev=[0.1, 0.1, 0.2, 0.2])
    out = layer([tf.constant(probs), tf.constant(deltas), tf.constant(anchors[None])]).numpy()[0]
    # pre-NMS keeps the 3 best (1, 2, 0); NMS removes 0 (overlaps 1); rest is padding
    np.testing.assert_allclose(out[0], anchors[1], atol=1e-6)
    np.testing.assert_allclose(out[1], anchors[2], atol=1e-6)
    assert not out[2:].any()


def test_proposals_apply_deltas_and_clip():
    anchors = np.array([[0.8, 0.2, 0.9, 0.3]], np.float32)
    probs = np.array([[[0.1, 0.9]]], np.float32)
    # dy = 1 box height (0.1) -> 1 / std 0.1 = 10 in network units
    deltas = np.array([[[10.0, 0.0, 0.0, 0.0]]], np.float32)
    layer = ProposalLayer(2, 0.7, 10, [0.1, 0.1, 0.2, 0.2])
    out = layer([tf.constant(probs), tf.constant(deltas), tf.constant(anchors[None])]).numpy()[0]
    np.testing.assert_allclose(out[0], [0.9, 0.2, 1.0, 0.3], atol=1e-6)
