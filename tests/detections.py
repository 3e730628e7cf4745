"""A hand-made detect() result the detection writers' tests share."""

from __future__ import annotations

import numpy as np


def hand_made_result(shape=(40, 30)):
    """Masses of 10 x 9 = 90 and 18 x 19 = 342 pixels."""
    masks = np.zeros(shape + (2,), dtype=bool)
    masks[5:15, 3:12, 0] = True
    masks[20:38, 10:29, 1] = True
    return {"rois": np.array([[5, 3, 15, 12], [20, 10, 38, 29]], np.int32),
            "class_ids": np.array([1, 2], np.int32),
            "scores": np.array([0.8, 0.95], np.float32),
            "class_probs": np.array([[0.2, 0.7, 0.1], [0.05, 0.15, 0.8]], np.float32),
            "case_score": 0.8, "masks": masks}
