"""A linear probe of what the classifier reads: does the feature FT-MTL-Net (or its twin) feeds
its classifier carry benign against malignant in a form that generalises?

For every mass of a set, the refined box of best IoU (at least ``MATCH_IOU``) gives the
classifier's input vector (the ROI class feature, with the transfer for FT-MTL-Net) and the
classifier's own p(malignant | mass) = p_m / (p_b + p_m). A logistic regression fitted on the
training masses' vectors and scored on the test masses' says how much of the grade a linear
read-out finds there; the network's own AUC on the same masses says how much its classifier
found. ``bench_accuracy.py --probe`` reports both (docs/training.md has why it was asked).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MATCH_IOU = 0.5
PROBE_C = 0.1  # inverse L2 strength of the probe (standardised features)


def classifier_input_model(net: Any):
    """A Keras model from the inference graph's inputs to its refined boxes, the classifier's
    input vector and its probabilities."""
    import keras

    from ftmtl.model import BASELINE_CLASSIFIER_LAYER, FTMTL_CLASSIFIER_LAYER

    model = net.keras_model
    name = FTMTL_CLASSIFIER_LAYER if net.transfer_branch else BASELINE_CLASSIFIER_LAYER
    return keras.Model(model.inputs, {
        "refined": model.get_layer("mrcnn_refined_rois").output,
        "feature": model.get_layer(name).input,
        "probs": model.get_layer("mrcnn_class").output,
    })


def mass_features(net: Any, feature_model: Any, dataset: Any
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [M, F], labels [M] (1 malignant), the classifier's p(malignant | mass) [M])
    of the masses of ``dataset`` that a refined box matches at IoU >= MATCH_IOU."""
    from ftmtl.veto import BENIGN_CLASS_ID, MALIGNANT_CLASS_ID
    from mrcnn.anchors import get_anchors
    from mrcnn.box_ops import compute_overlaps, extract_bboxes
    from mrcnn.data import mold_inputs
    from mrcnn.model import to_original_pixels

    features, labels, own = [], [], []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        if masks.shape[-1] == 0:
            continue
        image = dataset.load_image(image_id)
        molded, metas, windows = mold_inputs([image], net.config)
        anchors = get_anchors(net.config, tuple(molded.shape[1:3]))[np.newaxis]
        out = {k: np.asarray(v) for k, v in feature_model(
            {"input_image": molded, "input_image_meta": metas, "input_anchors": anchors},
            training=False).items()}
        boxes = to_original_pixels(out["refined"][0], molded.shape[1:3], windows[0],
                                   image.shape)
        overlaps = compute_overlaps(boxes, extract_bboxes(masks).astype(np.float32))
        for g, class_id in enumerate(class_ids):
            best = int(np.argmax(overlaps[:, g]))
            if overlaps[best, g] < MATCH_IOU or class_id not in (BENIGN_CLASS_ID,
                                                                 MALIGNANT_CLASS_ID):
                continue
            probs = out["probs"][0, best]
            features.append(out["feature"][0, best])
            labels.append(int(class_id == MALIGNANT_CLASS_ID))
            both = probs[BENIGN_CLASS_ID] + probs[MALIGNANT_CLASS_ID]
            own.append(float(probs[MALIGNANT_CLASS_ID] / both) if both > 0 else 0.5)
    matrix = np.asarray(features, np.float64) if features else np.zeros((0, 0))
    return matrix, np.asarray(labels, int), np.asarray(own, np.float64)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from ftmtl.metrics import roc_auc

    return roc_auc(labels, scores) if len(set(labels.tolist())) == 2 else None


def linear_probe(net: Any, train_ds: Any, test_ds: Any) -> dict[str, Any]:
    """Mass AUCs of the network's own classifier and of a logistic regression on its input
    features, on the training and the test masses (None where a set lacks a label)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feature_model = classifier_input_model(net)
    x_train, y_train, own_train = mass_features(net, feature_model, train_ds)
    x_test, y_test, own_test = mass_features(net, feature_model, test_ds)
    result: dict[str, Any] = {
        "n_train": int(y_train.size), "n_test": int(y_test.size),
        "features": int(x_train.shape[1]),
        "own_train_auc": _auc(y_train, own_train), "own_test_auc": _auc(y_test, own_test),
        "probe_train_auc": None, "probe_test_auc": None,
    }
    if len(set(y_train.tolist())) == 2:
        probe = make_pipeline(StandardScaler(),
                              LogisticRegression(C=PROBE_C, max_iter=5000)).fit(x_train, y_train)
        result["probe_train_auc"] = _auc(y_train, probe.decision_function(x_train))
        if y_test.size:
            result["probe_test_auc"] = _auc(y_test, probe.decision_function(x_test))
    return result
