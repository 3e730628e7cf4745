"""Export a trained model for serving: a TensorFlow SavedModel whose graph does everything
``detect`` does to a prepared image (molding, the network, unmolding of boxes and masks; see
``mrcnn.serving``) and scores the case, so a server needs TensorFlow and nothing of ours; and
the Keras model as a .keras file (``load_keras_model`` reads it back, with this package).

Input contract. The images are what ``inbreast detect`` gives the network: the breast crop of
the mammogram resized so that its long side is ``prepared_image_size(config)``
(``ftmtl.detect_io.prepare_dicom``, ``ftmtl.inbreast.preprocess.prepare_image``).
Finding the breast (Otsu's threshold, connected components) stays with the client. A batch is
one tensor, so its images share one size: [B, H, W] or [B, H, W, 1 | 3] (gray is replicated,
colour averaged, as the config's channel count needs). Two signatures:

- ``serving_default``: float32 in [0, 255], ``prepare_dicom``'s values (the intensity window
  of ``ftmtl.inbreast.intensity``, times 255);
- ``serving_uint16``: uint16 stored values ("high = dense"), cropped and resized but not
  windowed; the graph applies the config's INTENSITY_WINDOW: each image's percentile window
  ("percentile", and "dicom", whose files' own windows the graph cannot see: send those
  through ``serving_default``), or the stored value over 2^14 - 1 ("full_range", INbreast's
  BitsStored).

Outputs of both, D = DETECTION_MAX_INSTANCES, rows sorted as ``detect`` returns them, the
first ``num_detections`` real and the rest zeros:

- ``boxes`` int32 [B, D, 4]: (y1, x1, y2, x2) in the input image's pixels, y2/x2 exclusive;
- ``class_ids`` int32 [B, D]; ``scores`` float32 [B, D];
- ``masks`` bool [B, D, H, W]: each detection's mask on the whole input image;
- ``num_detections`` int32 [B];
- ``case_score`` float32 [B]: the malignant veto (``ftmtl.veto``); for a plain
  ``mrcnn.model.MaskRCNN``, which has no per-detection probabilities, the evaluation's fallback
  (``ftmtl.evaluation``): each detection's score stands for the probability of its class;
- ``class_probs`` float32 [B, D, NUM_CLASSES]: FT-MTL-Net (and its twin) only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from ftmtl.inbreast.intensity import PERCENTILE_SAMPLE_SIDE, PERCENTILES
from ftmtl.model import (
    RefineProposals,
    SequentialDetectionLayer,
    ftmtl_setting,
    intensity_window,
)
from ftmtl.prefilter import PrefilterRefined
from ftmtl.transfer import MaskWeightedTransfer
from ftmtl.veto import MalignantVeto
from mrcnn.checkpoint import save_config_json
from mrcnn.detection import DetectionLayer
from mrcnn.heads import WholeInputConv2D
from mrcnn.model import MaskRCNN
from mrcnn.norm import BatchNorm, GroupNorm
from mrcnn.roi_align import PyramidROIAlign, ROIAlign
from mrcnn.rpn import ProposalLayer
from mrcnn.serving import MoldedBatch, image_batch, mold_images, paste_masks, to_input_pixels

logger = logging.getLogger(__name__)

FLOAT_SIGNATURE = "serving_default"
UINT16_SIGNATURE = "serving_uint16"
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
CONFIG_FILE = "config.json"
# Bits a stored value of the uint16 signature holds (INbreast's BitsStored), and the value
# range of the float signature (prepare_dicom's).
BITS_STORED = 14
PIXEL_RANGE = 255.0

# Our layer classes, for reading the .keras file back.
CUSTOM_OBJECTS = {cls.__name__: cls for cls in (
    BatchNorm, GroupNorm, ProposalLayer, ROIAlign, PyramidROIAlign, DetectionLayer,
    RefineProposals, PrefilterRefined, SequentialDetectionLayer, MaskWeightedTransfer,
    MalignantVeto, WholeInputConv2D)}


@dataclass(frozen=True)
class ExportedModel:
    """Where ``export_model`` wrote the model."""

    saved_model: Path
    keras_file: Path
    config_file: Path


# --------------------------------------------------------------------------- the graph
def serving_function(model: MaskRCNN) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """images (float, [0, 255]) -> the outputs of the module docstring, all in TF ops."""
    if model.mode != "inference":
        raise ValueError("export: the model must be built in 'inference' mode")
    config = model.config
    keras_model = model.keras_model
    fallback_veto = MalignantVeto(
        benign_class=ftmtl_setting(config, "BENIGN_CLASS_ID"),
        malignant_class=ftmtl_setting(config, "MALIGNANT_CLASS_ID"),
        min_confidence=ftmtl_setting(config, "VETO_MIN_CONFIDENCE"),
        name="export_case_score")

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        molded = mold_images(images, config)
        outputs = keras_model(molded.model_inputs(), training=False)
        result = detections_in_input_pixels(outputs, molded)
        if "case_score" in outputs:
            result["case_score"] = tf.cast(outputs["case_score"], tf.float32)
        else:
            result["case_score"] = score_case_from_detections(
                fallback_veto, result, int(config.NUM_CLASSES))
        return result

    return serve


def detections_in_input_pixels(outputs: dict[str, tf.Tensor], molded: MoldedBatch
                               ) -> dict[str, tf.Tensor]:
    """The network's detections as ``MaskRCNN.unmold_detections`` gives them (real rows whose
    box keeps a positive area in the input image), moved to the front of each image's rows,
    the rest zero."""
    detections = tf.cast(outputs["detections"], tf.float32)
    boxes = to_input_pixels(detections[..., :4], molded)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = (detections[..., 4] > 0) & (area > 0)
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=1, stable=True)
    keep = tf.gather(keep, order, batch_dims=1)

    def zeroed(values: tf.Tensor) -> tf.Tensor:
        """values [B, D, ...] (rows in the new order) set to zero where no detection is."""
        where = tf.reshape(keep, tf.concat([tf.shape(keep), tf.ones([values.shape.rank - 2],
                                                                     tf.int32)], axis=0))
        return tf.where(where, values, tf.zeros_like(values))

    def reordered(values: tf.Tensor) -> tf.Tensor:
        return zeroed(tf.gather(values, order, batch_dims=1))

    class_ids = reordered(tf.cast(detections[..., 4], tf.int32))
    boxes = reordered(boxes)
    masks = reordered(tf.transpose(tf.cast(outputs["mrcnn_mask"], tf.float32), [0, 1, 4, 2, 3]))
    masks = tf.gather(masks, class_ids, axis=2, batch_dims=2)  # its class's map: [B, D, h, w]
    result = {
        "boxes": tf.cast(boxes, tf.int32),
        "class_ids": class_ids,
        "scores": reordered(detections[..., 5]),
        "masks": zeroed(paste_masks(masks, boxes, molded.image_shape)),
        "num_detections": tf.reduce_sum(tf.cast(keep, tf.int32), axis=1),
    }
    if "detection_probs" in outputs:
        result["class_probs"] = reordered(tf.cast(outputs["detection_probs"], tf.float32))
    return result


def score_case_from_detections(veto: MalignantVeto, result: dict[str, tf.Tensor],
                               num_classes: int) -> tf.Tensor:
    """The case score of a model without class probabilities per detection, as the evaluation
    computes it: each detection's score is the probability of its class, and no proposals
    (an image without detections scores 0)."""
    class_ids, scores = result["class_ids"], result["scores"]
    detections = tf.concat([tf.zeros(tf.concat([tf.shape(scores), [4]], axis=0)),
                            tf.cast(class_ids, tf.float32)[..., tf.newaxis],
                            scores[..., tf.newaxis]], axis=-1)
    probs = tf.one_hot(class_ids, num_classes) * scores[..., tf.newaxis]
    batch = tf.shape(scores)[0]
    no_proposals = tf.zeros(tf.stack([batch, 0, num_classes]))
    return veto([detections, probs, no_proposals, tf.zeros(tf.stack([batch, 0, 4]))])


def from_stored_values(images: tf.Tensor, window: str = "full_range",
                       bits_stored: int = BITS_STORED) -> tf.Tensor:
    """uint16 stored values [B, H, W] or [B, H, W, C] -> gray float32 [B, H, W, 1] in [0, 255]
    through the intensity ``window``, as ``prepare_image`` maps them ("dicom" as
    "percentile"). The rank may be unknown until the call (the signature takes any)."""
    values = image_batch(images, 1)  # colour averaged, as the float signature would
    if window == "full_range":
        top = float(2**bits_stored - 1)
        return tf.clip_by_value(values / top, 0.0, 1.0) * PIXEL_RANGE
    return percentile_window(values) * PIXEL_RANGE


def percentile_window(images: tf.Tensor) -> tf.Tensor:
    """``ftmtl.inbreast.intensity.percentile_window`` of each image of a float batch
    [B, H, W, C] (percentiles of the channels' mean, numpy's linear rule, on every
    ``sample_step``-th pixel)."""
    gray = tf.reduce_mean(images, axis=-1)
    height, width = tf.shape(gray)[1], tf.shape(gray)[2]
    step = tf.cast(tf.math.ceil(tf.cast(tf.maximum(height, width), tf.float32)
                                / PERCENTILE_SAMPLE_SIDE), tf.int32)
    step = tf.maximum(step, 1)
    sample = tf.sort(tf.reshape(gray[:, ::step, ::step], [tf.shape(gray)[0], -1]), axis=-1)
    low, high = (_sorted_percentile(sample, q) for q in PERCENTILES)
    spread = high - low
    scale = tf.where(spread > 0, 1.0 / tf.where(spread > 0, spread, 1.0), 0.0)
    shape = [-1, 1, 1, 1]
    return tf.clip_by_value((images - tf.reshape(low, shape)) * tf.reshape(scale, shape),
                            0.0, 1.0)


def _sorted_percentile(sorted_values: tf.Tensor, q: float) -> tf.Tensor:
    """The q-th percentile of each row of sorted values [B, N], numpy's "linear" rule."""
    last = tf.cast(tf.shape(sorted_values)[1] - 1, tf.float32)
    position = q / 100.0 * last
    below = tf.floor(position)
    fraction = position - below
    lower = tf.gather(sorted_values, tf.cast(below, tf.int32), axis=1)
    upper = tf.gather(sorted_values, tf.cast(tf.minimum(below + 1.0, last), tf.int32), axis=1)
    return lower + (upper - lower) * fraction


# ------------------------------------------------------------------------------ writing
class ServingModule(tf.Module):
    """What the SavedModel holds: the network's variables and the two signatures. The uint16
    signature calls the float one, so the network's graph is traced and stored once."""

    def __init__(self, model: MaskRCNN) -> None:
        super().__init__(name="ftmtl_serving")
        self.network_variables = list(model.keras_model.variables)
        self.intensity_window = intensity_window(model.config)
        self.serve = tf.function(serving_function(model), autograph=False, input_signature=[
            tf.TensorSpec(None, tf.float32, name="images")])
        self.serve_uint16 = tf.function(self._serve_stored_values, autograph=False,
                                        input_signature=[tf.TensorSpec(None, tf.uint16,
                                                                       name="images")])

    def _serve_stored_values(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.serve(from_stored_values(images, self.intensity_window))

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        return {FLOAT_SIGNATURE: self.serve.get_concrete_function(),
                UINT16_SIGNATURE: self.serve_uint16.get_concrete_function()}


def export_model(model: MaskRCNN, out_dir: str | os.PathLike) -> ExportedModel:
    """Write ``out_dir``/saved_model (the two signatures), ``out_dir``/model.keras and
    ``out_dir``/config.json. Refuses a folder that already holds a saved_model."""
    out = Path(out_dir)
    saved = out / SAVED_MODEL_DIR
    if saved.exists():
        raise FileExistsError(f"{saved} already exists; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    module = ServingModule(model)
    tf.saved_model.save(module, str(saved), signatures=module.signatures())
    keras_file = out / KERAS_FILE
    model.keras_model.save(keras_file)
    config_file = out / CONFIG_FILE
    save_config_json(model.config, config_file)
    logger.info("exported %s to %s", type(model).__name__, out)
    return ExportedModel(saved, keras_file, config_file)


def load_keras_model(path: str | os.PathLike) -> keras.Model:
    """The Keras model of an export's .keras file (needs this package for our layers; Keras'
    safe mode stays on: the file runs no Python of its own)."""
    return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
