"""The malignant veto: one malignancy score per case (image) from its detections (method.md §4).

The paper (section 2.3) scores a case from its boxes the way a reader would: one malignant box
makes the case malignant. So:

1. any detection predicted malignant: the case score is the highest malignant probability among
   those detections;
2. otherwise, with detections predicted benign: ``1 - S_bmax``, S_bmax the highest benign
   probability among them (a confidently benign case scores low);
3. no detection at all (our documented choice, so that every case has a score and the AUC is
   defined): the highest malignant probability over the refined proposals; 0 when the image
   has no proposal either.

The rule is not monotone in the evidence. A case whose only box is benign with p(benign) 0.55
scores 1 - 0.55 = 0.45; add a weak box called malignant with p(malignant) 0.40 (its benign 0.35,
background 0.25) and rule 1 takes over: the case scores 0.40, lower than without that box. The
paper's rule is kept as it is (tests/test_veto.py pins this example).

Probabilities are the classifier's softmax outputs, not the detection scores (1 - p_bg).
Detections of other foreground classes (with more than three classes) count as no detection.

The paper's veto reads the boxes kept "above a threshold (e.g. 0.5)". Evaluations keep
detections down to a lower DETECTION_MIN_CONFIDENCE so that the FROC reaches several false
positives per image; ``min_confidence`` (FTMTLConfig.VETO_MIN_CONFIDENCE, 0.5) keeps those
low-confidence boxes out of the case score, which they would otherwise decide whenever one of
them is called malignant. Detections below it count as no detection.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mrcnn.precision import Float32Layer
from mrcnn.targets import valid_roi_mask

BENIGN_CLASS_ID = 1
MALIGNANT_CLASS_ID = 2
# The paper's detection threshold: the boxes the veto reads (FTMTLConfig.VETO_MIN_CONFIDENCE).
VETO_MIN_CONFIDENCE = 0.5


def case_malignancy_score(class_ids, class_probs, proposal_malignant_probs,
                          benign_class: int = BENIGN_CLASS_ID,
                          malignant_class: int = MALIGNANT_CLASS_ID,
                          scores=None, min_confidence: float = 0.0) -> float:
    """The veto score of one case.

    class_ids [D]: predicted class per detection (0 rows are padding and ignored);
    class_probs [D, K]: the classifier's probabilities per detection;
    proposal_malignant_probs [P]: p(malignant) of the case's real refined proposals;
    scores [D] (with ``min_confidence``): detections scoring below ``min_confidence`` count
    as no detection.
    """
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64)
    proposal_probs = np.asarray(proposal_malignant_probs, dtype=np.float64).reshape(-1)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.size != class_ids.size:
            raise ValueError(f"case_malignancy_score: {scores.size} scores for "
                             f"{class_ids.size} class ids")
        class_ids = np.where(scores >= min_confidence, class_ids, 0)
    if class_ids.size == 0:
        return _proposal_fallback(proposal_probs)
    class_probs = np.asarray(class_probs, dtype=np.float64)
    if class_probs.ndim != 2 or class_probs.shape[0] != class_ids.size:
        raise ValueError(f"case_malignancy_score: class_probs must be [D, K] with D = "
                         f"{class_ids.size} (one row per class id), got {class_probs.shape}")
    if class_probs.shape[1] <= max(benign_class, malignant_class):
        raise ValueError(f"case_malignancy_score: class_probs has {class_probs.shape[1]} "
                         f"classes, the benign/malignant ids are {benign_class}/"
                         f"{malignant_class}")
    malignant = class_ids == malignant_class
    if malignant.any():
        return float(class_probs[malignant, malignant_class].max())
    benign = class_ids == benign_class
    if benign.any():
        return float(1.0 - class_probs[benign, benign_class].max())
    return _proposal_fallback(proposal_probs)


def _proposal_fallback(proposal_malignant_probs: np.ndarray) -> float:
    """No detection: the best p(malignant) over the proposals, 0 without any."""
    if proposal_malignant_probs.size == 0:
        return 0.0
    return float(proposal_malignant_probs.max())


class MalignantVeto(Float32Layer):
    """In-graph veto score per batch item.

    Inputs ``[detections [B, D, 6] (y1, x1, y2, x2, class_id, score), detection_probs
    [B, D, K], proposal_probs [B, N, K], proposals [B, N, 4]]``; zero-area proposals are
    padding; detections scoring below ``min_confidence`` count as none. Output ``[B]`` float32.
    """

    supports_jit = False

    def __init__(self, benign_class: int = BENIGN_CLASS_ID,
                 malignant_class: int = MALIGNANT_CLASS_ID, min_confidence: float = 0.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.benign_class = int(benign_class)
        self.malignant_class = int(malignant_class)
        self.min_confidence = float(min_confidence)

    def call(self, inputs):
        detections, detection_probs, proposal_probs, proposals = inputs
        class_ids = tf.cast(tf.round(detections[..., 4]), tf.int32)
        confident = tf.cast(detections[..., 5], tf.float32) >= self.min_confidence
        class_ids = tf.where(confident, class_ids, 0)
        detection_probs = tf.cast(detection_probs, tf.float32)
        lowest = tf.constant(-np.inf, tf.float32)

        def best(where, values):
            return tf.reduce_max(tf.where(where, values, lowest), axis=1)

        malignant = tf.equal(class_ids, self.malignant_class)
        benign = tf.equal(class_ids, self.benign_class)
        valid = valid_roi_mask(proposals)
        proposal_best = best(valid, tf.cast(proposal_probs[..., self.malignant_class],
                                            tf.float32))
        fallback = tf.where(tf.reduce_any(valid, axis=1), proposal_best, 0.0)
        benign_score = 1.0 - best(benign, detection_probs[..., self.benign_class])
        return tf.where(
            tf.reduce_any(malignant, axis=1),
            best(malignant, detection_probs[..., self.malignant_class]),
            tf.where(tf.reduce_any(benign, axis=1), benign_score, fallback),
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def get_config(self):
        config = super().get_config()
        config.update(benign_class=self.benign_class, malignant_class=self.malignant_class,
                      min_confidence=self.min_confidence)
        return config
