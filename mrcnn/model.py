"""MaskRCNN: builds the network from its parts, trains it, detects, saves and loads weights.

The public API is Matterport's (``MaskRCNN(mode, config, model_dir)``, ``train``,
``detect``, ``load_weights``, ``find_last``, ``keras_model``) on Keras 3: losses are computed
in a custom ``train_step``, batches come from parallel ``PyDataset`` workers, and a
``tf.distribute`` strategy may wrap building and training.

Training is resumable and fails loudly: every epoch's checkpoint holds the weights and the
optimizer's state, written atomically; ``load_weights(find_last())`` continues the epoch count,
the data order, the momentum and the learning-rate schedule; a NaN or inf loss stops the run at
that batch, naming its images, before any update or checkpoint. ``enable_determinism`` makes two
runs give bitwise-identical weights.

Sub-classes change the network by overriding the ``build_*`` methods (FT-MTL-Net overrides the
classifier and the inference order).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mrcnn import data as data_lib
from mrcnn import losses as L
from mrcnn.anchors import anchors_per_location, get_anchors
from mrcnn.augmentation import Flip, Sequential, SomeOf
from mrcnn.backbone import LAYER_PRESETS, build_backbone
from mrcnn.checkpoint import (
    OptimizerState,
    checkpoint_epoch,
    find_last_checkpoint,
    improves,
    keep_best_checkpoint,
    last_checkpoint_in,
    new_log_dir,
    optimizer_state_mismatch,
    prune_checkpoints,
    read_best_record,
    read_optimizer_state,
    remove_stale_temp_files,
    restore_optimizer_state,
    save_config_json,
    save_weights_h5,
)
from mrcnn.data import (  # noqa: F401  (mold_image: Matterport's mrcnn.model name)
    DataGenerator,
    mold_image,
    mold_inputs,
    unmold_mask,
)
from mrcnn.detection import DetectionLayer
from mrcnn.epoch_line import EpochLine
from mrcnn.heads import HeadOutputs, box_head, classifier, head_initializer, mask_head
from mrcnn.image_meta import (  # noqa: F401  (compose/parse: Matterport's mrcnn.model names)
    compose_image_meta,
    parse_image_meta,
    parse_image_meta_graph,
)
from mrcnn.lr_schedule import learning_rate_schedule
from mrcnn.malloc import tune_malloc
from mrcnn.norm import BatchNorm, config_norm
from mrcnn.precision import FLOAT32, precision_scope
from mrcnn.rpn import ProposalLayer, build_rpn_model
from mrcnn.run_config import describe_run
from mrcnn.run_config import save_beside as save_run_config_beside
from mrcnn.targets import DetectionTargetLayer, valid_roi_mask
from mrcnn.weights import load_legacy_h5

logger = logging.getLogger(__name__)

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule


def enable_determinism(seed: int, ops: bool = True) -> None:
    """Seed Python, numpy and TensorFlow and (with ``ops``) make TF ops deterministic, so that
    two runs with the same data, config and seed give bitwise-identical weights. Call it before
    building the model (the initial weights are drawn then). Op determinism holds for the rest
    of the process; it makes some ops slower (benchmarks/bench_determinism.py) and on GPU, ops
    without a deterministic kernel raise. ``ops=False`` only seeds: the same initial weights,
    data order and augmentation, but reductions may add up in another order from run to run."""
    keras.utils.set_random_seed(seed)
    if ops:
        tf.config.experimental.enable_op_determinism()


def progress_verbosity(show: bool = True) -> int:
    """Keras' ``verbose`` for progress output: a bar on a terminal; 2 when stdout is a file or
    a pipe (a bar's redraws would fill a log with ANSI codes), which ``MaskRCNN.train`` shows as
    one line an epoch with the ETA (``mrcnn.epoch_line``); 0 when not shown."""
    if not show:
        return 0
    return 1 if sys.stdout.isatty() else 2


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or inf loss (or gradient); the message names the batch's images."""


@dataclass
class NonFiniteBatch:
    """A training batch whose loss or gradient was not finite: its image ids (image_meta
    column 0) and its losses."""

    image_ids: list[int]
    losses: dict[str, float] = field(default_factory=dict)


def _all_finite(tensors) -> tf.Tensor:
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


# --------------------------------------------------------------------------- training model
class MaskRCNNTrainer(keras.Model):
    """The training graph with its losses: ``train_step`` and ``test_step`` compute the five
    Mask R-CNN losses from the graph's outputs and the batch's targets."""

    def __init__(self, *args, loss_weights: dict[str, float] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_weights = dict(loss_weights or {name: 1.0 for name in LOSS_NAMES})
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *LOSS_NAMES)}
        # Filled by train_step (through a py_function) when a step is not finite; read and
        # cleared by NonFiniteLossGuard after each batch. A deque: Keras leaves it untracked.
        self.nonfinite_batches: deque[NonFiniteBatch] = deque()

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras all-reduces the first distributed batch, as one nest, only to learn the input
        shapes before it builds the model; MultiWorkerMirroredStrategy's reduce fails on a
        dict of inputs (keras-team/keras#20329) and on uint8 masks. There, this worker's first
        replica's batch gives the same shapes without any exchange. Other strategies keep
        Keras' own path."""
        strategy = self._distribute_strategy
        if iterator is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            first = next(batches)
            break
        local = tf.nest.map_structure(
            lambda value: strategy.experimental_local_results(value)[0], first)
        return super()._maybe_symbolic_build(data_batch=local)

    def compute_losses(self, batch: dict, outputs: dict) -> dict[str, tf.Tensor]:
        """The five losses, each a scalar."""
        return {
            "rpn_class_loss": L.rpn_class_loss(batch["input_rpn_match"],
                                               outputs["rpn_class_logits"]),
            "rpn_bbox_loss": L.rpn_bbox_loss(batch["input_rpn_bbox"], batch["input_rpn_match"],
                                             outputs["rpn_bbox"]),
            "mrcnn_class_loss": L.mrcnn_class_loss(outputs["target_class_ids"],
                                                   outputs["mrcnn_class_logits"],
                                                   valid_roi_mask(outputs["rois"])),
            "mrcnn_bbox_loss": L.mrcnn_bbox_loss(outputs["target_bbox"],
                                                 outputs["target_class_ids"],
                                                 outputs["mrcnn_bbox"]),
            "mrcnn_mask_loss": L.mrcnn_mask_loss(outputs["target_mask"],
                                                 outputs["target_class_ids"],
                                                 outputs["mrcnn_mask"]),
        }

    def total_loss(self, losses: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.add_n([tf.cast(self.loss_weights.get(name, 0.0), tf.float32) * value
                         for name, value in losses.items()])

    def _forward(self, data, training: bool):
        batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self(batch, training=training)
        losses = self.compute_losses(batch, outputs)
        return batch, losses, self.total_loss(losses)

    def _update(self, losses, total) -> dict[str, tf.Tensor]:
        self.trackers["loss"].update_state(total)
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras averages each log over the workers along its axis 0 there, which a
            # scalar lacks: give it one (the mean comes back a scalar).
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def train_step(self, data):
        with tf.GradientTape() as tape:
            batch, losses, total = self._forward(data, training=True)
            # Replica gradients are summed across devices: scale so the step is the mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(tf.convert_to_tensor(g), v) for g, v in zip(grads, variables, strict=True)
                 if g is not None]
        finite = self._step_is_finite(losses, total, [g for g, _ in pairs])
        self._record_if_not_finite(finite, batch["input_image_meta"], losses, total)
        # A non-finite step applies no gradient, so the weights in memory stay finite while
        # NonFiniteLossGuard stops the run.
        pairs = [(tf.where(finite, g, tf.zeros_like(g)), v) for g, v in pairs]
        self.optimizer.apply_gradients(pairs)
        return self._update(losses, total)

    def _step_is_finite(self, losses, total, grads) -> tf.Tensor:
        """Losses and gradients all finite. A loss-scaling optimizer (mixed precision) handles
        overflowing gradients itself, so only the losses are checked there."""
        finite = _all_finite([total, *losses.values()])
        if grads and not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            finite = tf.logical_and(finite, _all_finite(grads))
        return finite

    def _record_if_not_finite(self, finite, image_meta, losses, total) -> None:
        names = ["loss", *losses]
        values = tf.stack([tf.cast(v, tf.float32) for v in (total, *losses.values())])

        def record(ids, loss_values):
            self.nonfinite_batches.append(NonFiniteBatch(
                image_ids=[int(round(float(i))) for i in ids.numpy()],
                losses=dict(zip(names, (float(v) for v in loss_values.numpy()), strict=True))))
            return np.int32(0)

        tf.cond(finite, lambda: tf.constant(0, tf.int32),
                lambda: tf.py_function(record, [parse_image_meta_graph(image_meta)["image_id"],
                                                values], tf.int32))

    def test_step(self, data):
        _, losses, total = self._forward(data, training=False)
        return self._update(losses, total)


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss or gradient is NaN or inf, with an error
    naming the batch's images (``dataset.image_reference``). That step applied no update and
    the epoch's checkpoint is never written, so the last checkpoint is the last good one."""

    def __init__(self, owner: MaskRCNN, dataset=None) -> None:
        super().__init__()
        self.owner = owner
        self.dataset = dataset
        self.epoch = 0

    def on_train_begin(self, logs=None) -> None:
        self.owner.keras_model.nonfinite_batches.clear()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        records = self.owner.keras_model.nonfinite_batches
        if records:
            found = list(records)
            records.clear()
            raise NonFiniteLossError(self.message(found, batch))

    def describe_image(self, image_id: int) -> str:
        reference = ""
        if self.dataset is not None:
            try:
                reference = str(self.dataset.image_reference(image_id))
            except (IndexError, KeyError):
                reference = ""
        return f"{reference} (image id {image_id})" if reference else f"image id {image_id}"

    def message(self, found: list[NonFiniteBatch], batch: int) -> str:
        ids = [i for record in found for i in record.image_ids]
        losses = found[0].losses
        bad = {k: v for k, v in losses.items() if not np.isfinite(v)}
        what = (f"non-finite loss ({', '.join(f'{k}={v}' for k, v in bad.items())})" if bad
                else "non-finite gradient (the losses were finite: "
                     f"{', '.join(f'{k}={v:.4g}' for k, v in losses.items())})")
        last = last_checkpoint_in(self.owner.log_dir)
        epoch = self.epoch + 1
        return (f"{what} at epoch {epoch}, batch {batch + 1}; the batch's images: "
                f"{', '.join(self.describe_image(i) for i in ids)}. Training stopped before "
                f"applying this step; no checkpoint was written for epoch {epoch}; the last "
                f"checkpoint is {last if last else f'none yet (in {self.owner.log_dir})'}. "
                f"Check these images and their masks, or lower the learning rate.")


class CheckpointCallback(keras.callbacks.Callback):
    """Writes ``mask_rcnn_<name>_<epoch>.h5`` after every epoch, atomically, with the
    optimizer's state tagged with the epoch and the epochs of this ``train`` call (resuming
    mid-call restores it; see ``MaskRCNN.train``). An epoch whose mean loss is not finite is
    not saved. With ``KEEP_CHECKPOINTS`` set, older checkpoints of the run are then deleted;
    with ``BEST_CHECKPOINT_METRIC`` set, the best epoch's is copied apart first (a resumed
    run goes on from its recorded best)."""

    def __init__(self, owner: MaskRCNN) -> None:
        super().__init__()
        self.owner = owner
        self.best: float | None = None
        self._missing_metric_told = False

    def on_train_begin(self, logs=None) -> None:
        remove_stale_temp_files(self.owner.log_dir)
        metric = self.owner.config.BEST_CHECKPOINT_METRIC
        record = read_best_record(self.owner.log_dir) if metric else None
        self.best = float(record["value"]) if record and record["metric"] == metric else None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            logger.error("epoch %d: mean loss %s is not finite; no checkpoint written",
                         epoch + 1, loss)
            return
        self.owner.epoch = epoch + 1
        path = self.owner.checkpoint_path.format(epoch=epoch + 1)
        model = self.owner.keras_model
        save_weights_h5(model, path, optimizer=model.optimizer,
                        optimizer_attrs={"epoch": epoch + 1,
                                         "train_epochs": int(self.params.get("epochs", 0)),
                                         "start_epoch": int(self.owner.call_start_epoch)},
                        run_config=self.owner.run_description())
        logger.info("saved %s", path)
        self._keep_if_best(path, logs or {}, epoch + 1)
        keep = self.owner.config.KEEP_CHECKPOINTS
        if keep:
            for old in prune_checkpoints(self.owner.log_dir, keep):
                logger.info("removed %s (KEEP_CHECKPOINTS=%d)", old, keep)


    def _keep_if_best(self, path: str, logs: dict, epoch: int) -> None:
        metric = self.owner.config.BEST_CHECKPOINT_METRIC
        if not metric:
            return
        if metric not in logs:
            if not self._missing_metric_told:
                logger.warning("BEST_CHECKPOINT_METRIC %r is not in the epoch log (it has %s; "
                               "val_* values need a validation set): no best checkpoint kept",
                               metric, ", ".join(sorted(logs)) or "nothing")
                self._missing_metric_told = True
            return
        value = float(logs[metric])
        if improves(metric, value, self.best):
            self.best = value
            best = keep_best_checkpoint(path, self.owner.log_dir, self.owner._run_name(),
                                        metric, value, epoch)
            logger.info("epoch %d is the best so far by %s (%.4g): %s", epoch, metric, value,
                        best)


# ----------------------------------------------------------------------------------- model
class MaskRCNN:
    """Mask R-CNN in ``training`` or ``inference`` mode (Matterport's API)."""

    def __init__(self, mode: str, config, model_dir: str | os.PathLike,
                 strategy: tf.distribute.Strategy | None = None) -> None:
        if mode not in ("training", "inference"):
            raise ValueError(f"MaskRCNN: mode must be 'training' or 'inference', got {mode!r}")
        tune_malloc()
        self.mode = mode
        self.config = config
        self.model_dir = str(model_dir)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.epoch = 0
        # Epoch at which the current (or last) train() call started: its learning-rate schedule
        # counts from there, also after a resume in the middle of the call.
        self.call_start_epoch = 0
        self._resume_optimizer: OptimizerState | None = None
        # The training dataset's class names (background first), recorded in checkpoints.
        self.class_names: list[str] | None = None
        # The run folder train() made for this model (None until then); see _claim_log_dir.
        self._claimed_log_dir: str | None = None
        self.set_log_dir()
        with self.strategy.scope(), precision_scope(config.MIXED_PRECISION):
            self.keras_model = self.build(mode, config)
        self._predict = None

    # ------------------------------------------------------------------------- building
    def build(self, mode: str, config) -> keras.Model:
        """Assemble the graph for the mode."""
        h, w = (None, None) if config.IMAGE_RESIZE_MODE != "square" else (
            int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1]))
        inputs = {
            "input_image": keras.Input((h, w, config.IMAGE_CHANNEL_COUNT), name="input_image"),
            "input_image_meta": keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta"),
            "input_anchors": keras.Input((None, 4), name="input_anchors"),
        }
        rpn_maps, mrcnn_maps = self.build_backbone(inputs["input_image"])
        rpn_class_logits, rpn_probs, rpn_bbox = self.build_rpn(rpn_maps)
        proposal_count = (config.POST_NMS_ROIS_TRAINING if mode == "training"
                          else config.POST_NMS_ROIS_INFERENCE)
        proposals = ProposalLayer(proposal_count, config.RPN_NMS_THRESHOLD,
                                  config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                                  name="ROI")([rpn_probs, rpn_bbox, inputs["input_anchors"]])
        if mode == "inference":
            outputs = self.build_inference_heads(proposals, mrcnn_maps,
                                                 inputs["input_image_meta"])
            outputs.update(rpn_rois=proposals, rpn_class=rpn_probs, rpn_bbox=rpn_bbox)
            return keras.Model(inputs, outputs, name="mask_rcnn")

        mask_shape = (tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK
                      else (h, w))
        inputs.update({
            "input_rpn_match": keras.Input((None,), dtype="int32", name="input_rpn_match"),
            "input_rpn_bbox": keras.Input((config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4),
                                          name="input_rpn_bbox"),
            "input_gt_class_ids": keras.Input((config.MAX_GT_INSTANCES,), dtype="int32",
                                              name="input_gt_class_ids"),
            "input_gt_boxes": keras.Input((config.MAX_GT_INSTANCES, 4), name="input_gt_boxes"),
            "input_gt_masks": keras.Input((*mask_shape, config.MAX_GT_INSTANCES), dtype="uint8",
                                          name="input_gt_masks"),
        })
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config, name="proposal_targets")([proposals, inputs["input_gt_class_ids"],
                                              inputs["input_gt_boxes"],
                                              inputs["input_gt_masks"]])
        heads = self.build_training_heads(rois, mrcnn_maps, inputs["input_image_meta"])
        outputs = {
            "rpn_class_logits": rpn_class_logits,
            "rpn_bbox": rpn_bbox,
            "rois": rois,
            "target_class_ids": target_class_ids,
            "target_bbox": target_bbox,
            "target_mask": target_mask,
            "mrcnn_class_logits": heads.class_logits,
            "mrcnn_bbox": heads.bbox_deltas,
            "mrcnn_mask": heads.masks,
        }
        return MaskRCNNTrainer(inputs, outputs, name="mask_rcnn",
                               loss_weights=config.LOSS_WEIGHTS)

    def build_backbone(self, input_image):
        return build_backbone(input_image, self.config)

    def build_rpn(self, rpn_maps):
        """The shared RPN head on every level, outputs concatenated level by level."""
        config = self.config
        depth = int(rpn_maps[0].shape[-1])
        rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, anchors_per_location(config), depth,
                              kernel_initializer=head_initializer(config))
        per_level = [rpn(p) for p in rpn_maps]
        if len(per_level) == 1:
            return per_level[0]
        return [keras.layers.Concatenate(axis=1, name=name, dtype=FLOAT32)(
                    [lvl[i] for lvl in per_level])
                for i, name in enumerate(("rpn_class_logits", "rpn_class", "rpn_bbox"))]

    def build_classifier(self, class_feature, mask_feature, masks):
        """Class logits and probabilities from the ROI feature (FT-MTL-Net adds the
        mask-weighted transfer feature here)."""
        return classifier(class_feature, self.config, head_initializer(self.config))

    def build_training_heads(self, rois, mrcnn_maps, image_meta) -> HeadOutputs:
        """Box, mask and class heads on the sampled ROIs (the mask head runs on every ROI;
        its loss counts positives only)."""
        roi_feature, class_feature, deltas = box_head(rois, mrcnn_maps, image_meta, self.config)
        mask_feature, masks = mask_head(rois, mrcnn_maps, image_meta, self.config,
                                        roi_feature=roi_feature)
        logits, probs = self.build_classifier(class_feature, mask_feature, masks)
        return HeadOutputs(class_feature, deltas, mask_feature, masks, logits, probs)

    def build_inference_heads(self, rois, mrcnn_maps, image_meta) -> dict[str, Any]:
        """Matterport's order: classify (as DETECTION_SCORE says) and refine the proposals,
        select detections, then run the mask head on the detection boxes."""
        _, class_feature, deltas = box_head(rois, mrcnn_maps, image_meta, self.config)
        _, probs = self.build_classifier(class_feature, None, None)
        detections, _ = DetectionLayer(self.config, name="mrcnn_detection")(
            [rois, probs, deltas, image_meta])
        boxes = detections[:, :, :4]
        _, masks = mask_head(boxes, mrcnn_maps, image_meta, self.config)
        return {"detections": detections, "mrcnn_class": probs, "mrcnn_bbox": deltas,
                "mrcnn_mask": masks}

    # ------------------------------------------------------------------------ log dirs
    def set_log_dir(self, model_path: str | os.PathLike | None = None) -> None:
        """Name a new run folder, or continue the one ``model_path`` belongs to (the next
        epoch is the checkpoint's epoch + 1). Nothing is written: ``train`` makes the folder."""
        epoch = checkpoint_epoch(model_path) if model_path else None
        if epoch is not None:
            self._use_log_dir(Path(model_path).parent)
            self.epoch = epoch
        else:
            self._use_log_dir(new_log_dir(self.model_dir, self._run_name()))
            self.epoch = 0

    def _run_name(self) -> str:
        return (self.config.NAME or "model").lower()

    def _use_log_dir(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = str(log_dir)
        self.checkpoint_path = os.path.join(self.log_dir,
                                            f"mask_rcnn_{self._run_name()}_{{epoch:04d}}.h5")

    def _claim_log_dir(self) -> None:
        """Make the run folder when training starts. A new run (epoch 0) whose folder another
        run made since this model was built takes the next free name, so runs started
        together never share a folder; a continued run writes into its own."""
        if self.epoch > 0 or self._claimed_log_dir == self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            return
        while True:
            try:
                Path(self.log_dir).mkdir(parents=True)
                break
            except FileExistsError:
                self._use_log_dir(new_log_dir(self.model_dir, self._run_name()))
        self._claimed_log_dir = self.log_dir

    def find_last(self) -> str:
        """Path of the last checkpoint of the last run of this configuration."""
        return str(find_last_checkpoint(self.model_dir, self.config.NAME or "model"))

    # -------------------------------------------------------------------------- weights
    def save_weights(self, filepath: str | os.PathLike) -> None:
        """Write the weights by layer name, with the run's description (``run_description``)."""
        save_weights_h5(self.keras_model, filepath, run_config=self.run_description())

    def run_description(self) -> dict[str, Any]:
        """What checkpoints record about their run (``mrcnn.run_config``): the config, this
        class, the class names."""
        network = f"{type(self).__module__}.{type(self).__qualname__}"
        return describe_run(self.config, network, self.class_names)

    def load_weights(self, filepath: str | os.PathLike, by_name: bool = False,
                     exclude: list[str] | None = None, continue_run: bool = True):
        """Load an ``.h5`` weight file (ours or Matterport's) by layer name; ``exclude``
        lists layer names to leave as they are. With ``continue_run`` (Matterport's behaviour)
        the run goes on where the checkpoint left it: its folder, its epoch count, and its
        optimizer state for the next ``train`` call (see ``train``); without it only the
        weights come in and the model keeps its own new run at epoch 0.

        ``by_name`` is kept for Matterport's signature; weights always match by layer name,
        since position-based matching silently breaks between model variants."""
        del by_name
        report = load_legacy_h5(self.keras_model, filepath, by_name=True, exclude=exclude)
        if not continue_run:
            self.epoch, self._resume_optimizer = 0, None
            return report
        self.set_log_dir(filepath)
        self._resume_optimizer = (read_optimizer_state(filepath) if self.mode == "training"
                                  else None)
        # The values are assigned in place: the traced inference function stays valid.
        return report

    def load_imagenet_weights(self, source: str = "imagenet", flip_bgr: bool = False):
        """Initialise the ResNet backbone from ``keras.applications`` ImageNet weights.

        ``source``: "imagenet" (Keras downloads the file on first use; needs internet) or a
        local path to Keras' ResNet-50/101 ``.h5`` weights (works offline). Grayscale models
        (IMAGE_CHANNEL_COUNT 1) get conv1 folded to one channel."""
        from mrcnn.weights import convert_keras_resnet, keras_resnet

        if self.config.BACKBONE not in ("resnet50", "resnet101"):
            raise ValueError(f"ImageNet weights need a ResNet backbone, the config has "
                             f"BACKBONE={self.config.BACKBONE!r}")
        source_model = keras_resnet(self.config.BACKBONE, weights=source)
        report = convert_keras_resnet(source_model, self.keras_model, flip_bgr=flip_bgr)
        self._predict = None
        return report

    # ------------------------------------------------------------------------- training
    def set_trainable(self, layer_regex: str) -> list[str]:
        """Make layers whose name fully matches the regex trainable, freeze the rest.
        BatchNorm layers stay frozen under NORM "frozen_batch" (TRAIN_BN False). Returns the
        trainable names."""
        pattern = re.compile(layer_regex)
        frozen_bn = config_norm(self.config) == "frozen_batch"
        names = []

        def visit(model: keras.Model) -> None:
            for layer in model.layers:
                if isinstance(layer, keras.Model):
                    # Setting a model's flag sets all its layers' flags: set it first.
                    layer.trainable = True
                    visit(layer)
                    continue
                if not layer.weights:
                    continue
                trainable = bool(pattern.fullmatch(layer.name))
                if isinstance(layer, BatchNorm) and frozen_bn:
                    trainable = False
                layer.trainable = trainable
                if trainable:
                    names.append(layer.name)

        visit(self.keras_model)
        return names

    def compile(self, learning_rate: LearningRate, momentum: float,
                loss_weights: dict[str, float] | None = None) -> None:
        """SGD with momentum (or Adam, per OPTIMIZER), gradient clipping and decoupled weight
        decay (not on biases and BatchNorm parameters). ``learning_rate``: a number or a Keras
        ``LearningRateSchedule`` (it follows the optimizer's iteration count)."""
        common = {"learning_rate": learning_rate, "clipnorm": self.config.GRADIENT_CLIP_NORM,
                  "weight_decay": self.config.WEIGHT_DECAY or None}
        if self.config.OPTIMIZER == "adam":
            optimizer = keras.optimizers.Adam(beta_1=momentum, **common)
        else:
            optimizer = keras.optimizers.SGD(momentum=momentum, **common)
        if self.config.WEIGHT_DECAY:
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        if loss_weights is not None:
            self.keras_model.loss_weights = dict(loss_weights)
        self.keras_model.compile(optimizer=optimizer, jit_compile=False)

    def train(self, train_dataset, val_dataset, learning_rate: LearningRate, epochs: int,
              layers: str, augmentation=None, custom_callbacks=None,
              no_augmentation_sources=None, loss_weights: dict[str, float] | None = None,
              sampler=None, verbose: int = 1, seed: int = 0, lr_warmup_steps: int | None = None,
              lr_decay: str | None = None) -> keras.callbacks.History:
        """Train to epoch ``epochs`` (an absolute count, as in Matterport: training resumed
        from epoch 3 with epochs=5 runs two more). ``layers``: a preset (heads, 3+, 4+, 5+,
        all) or a regex of layer names. A number as ``learning_rate`` follows the config's
        LR_WARMUP_STEPS and LR_DECAY over this call's steps (``lr_warmup_steps`` and
        ``lr_decay`` override them); a LearningRateSchedule is used as it is. ``seed`` fixes
        the data order and augmentation draws (epoch e's batches depend on (seed, e) only, so a
        resumed run sees what an uninterrupted one would); for bitwise-reproducible weights call
        ``enable_determinism`` before building the model. ``verbose`` as Keras' ``fit``: 1 a
        progress bar, 2 one line an epoch (ours, with the ETA; ``progress_verbosity`` picks it
        for logs), 0 nothing.

        Each call compiles a fresh optimizer. After ``load_weights`` of a checkpoint written in
        the middle of a call (its epoch below that call's ``epochs``), the first call restores
        the checkpoint's optimizer state (iterations, momentum; the learning rate given here
        wins) when the optimizer type and the trainable layers match, so the run continues as if
        never stopped; otherwise it logs why not (INFO) and starts fresh.

        A NaN or inf loss or gradient raises ``NonFiniteLossError`` naming the batch's images;
        that step is not applied and no checkpoint is written for its epoch."""
        if self.mode != "training":
            raise ValueError("MaskRCNN.train needs a model created in 'training' mode")
        if no_augmentation_sources:
            logger.warning("no_augmentation_sources is not supported; augmentation applies "
                           "to every source")
        config = self.config
        regex = LAYER_PRESETS.get(layers, layers)
        train_gen = DataGenerator(train_dataset, config, shuffle=True,
                                  augmentation=augmentation, steps=config.STEPS_PER_EPOCH,
                                  sampler=sampler, seed=seed, initial_epoch=self.epoch)
        val_gen = (DataGenerator(val_dataset, config, shuffle=True,
                                 steps=config.VALIDATION_STEPS, seed=seed + 1,
                                 initial_epoch=self.epoch)
                   if val_dataset is not None else None)
        self._claim_log_dir()
        if getattr(train_dataset, "class_names", None):
            self.class_names = [str(name) for name in train_dataset.class_names]
        save_config_json(config, os.path.join(self.log_dir, "config.json"))
        save_run_config_beside(self.run_description(), self.log_dir)
        self.call_start_epoch = self._call_start(epochs)
        if isinstance(learning_rate, int | float):
            learning_rate = learning_rate_schedule(
                float(learning_rate), (epochs - self.call_start_epoch) * config.STEPS_PER_EPOCH,
                config.LR_WARMUP_STEPS if lr_warmup_steps is None else lr_warmup_steps,
                config.LR_DECAY if lr_decay is None else lr_decay)
        with self.strategy.scope():
            trainable = self.set_trainable(regex)
            self.compile(learning_rate, config.LEARNING_MOMENTUM, loss_weights)
            self._restore_optimizer_state()
        logger.info("training %d layers from epoch %d to %d (lr %s), log dir %s",
                    len(trainable), self.epoch, epochs, learning_rate, self.log_dir)
        # verbose=2 (a log, not a terminal): our one line an epoch with the ETA, not Keras'.
        epoch_line = verbose == 2
        callbacks = [
            NonFiniteLossGuard(self, train_dataset),
            keras.callbacks.TensorBoard(log_dir=self.log_dir, write_graph=False,
                                        profile_batch=0),
            CheckpointCallback(self),
            *([EpochLine()] if epoch_line else []),
            *(custom_callbacks or []),
        ]
        # The generators order each epoch from (seed, epoch): Keras' own shuffling (Python's
        # global random state) would make the order depend on the process history.
        history = self.keras_model.fit(train_gen, initial_epoch=self.epoch, epochs=epochs,
                                       validation_data=val_gen, callbacks=callbacks,
                                       verbose=0 if epoch_line else verbose, shuffle=False)
        self.epoch = max(self.epoch, epochs)
        return history

    def _call_start(self, epochs: int) -> int:
        """Start epoch of this train() call: the model's epoch, or, when resuming a call that a
        checkpoint was written in the middle of (same target epoch), that call's start."""
        state = self._resume_optimizer
        if state is not None and int(state.attrs.get("epoch", -1)) == self.epoch and int(
                state.attrs.get("train_epochs", -1)) == int(epochs):
            return min(int(state.attrs.get("start_epoch", self.epoch)), self.epoch)
        return self.epoch

    def _restore_optimizer_state(self) -> None:
        """Apply the optimizer state kept by ``load_weights`` to the just-compiled optimizer,
        once, when the checkpoint was written mid-call and everything matches."""
        state, self._resume_optimizer = self._resume_optimizer, None
        if state is None:
            return
        model = self.keras_model
        saved_epoch = int(state.attrs.get("epoch", -1))
        call_epochs = int(state.attrs.get("train_epochs", -1))
        if saved_epoch != self.epoch:
            reason = f"it was saved at epoch {saved_epoch}, training starts at {self.epoch}"
        elif saved_epoch >= call_epochs:
            reason = ("the checkpoint ends its train() call, and a new call starts with a fresh "
                      "optimizer, as it would have without the interruption")
        else:
            reason = optimizer_state_mismatch(model.optimizer, model.trainable_variables, state)
        if reason:
            logger.info("optimizer state of the checkpoint not restored: %s", reason)
            return
        restore_optimizer_state(model.optimizer, model.trainable_variables, state)
        logger.info("restored the optimizer state of epoch %d (iteration %d)", saved_epoch,
                    int(model.optimizer.iterations.numpy()))

    # ------------------------------------------------------------------------ inference
    def run_graph(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference forward pass on molded inputs, through a cached tf.function."""
        if self._predict is None:
            model = self.keras_model
            self._predict = tf.function(lambda x: model(x, training=False),
                                        reduce_retracing=True)
        outputs = self._predict({k: tf.convert_to_tensor(v) for k, v in batch.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    def detect(self, images: list[np.ndarray], verbose: int = 0) -> list[dict[str, np.ndarray]]:
        """Detect instances in any number of images (processed BATCH_SIZE at a time).

        Returns one dict per image: ``rois`` [N, 4] int32 (y1, x1, y2, x2) in the original
        image's pixels, ``class_ids`` [N] int32, ``scores`` [N] float32, ``masks`` [H, W, N]
        bool at the original size.
        """
        if self.mode != "inference":
            raise ValueError("MaskRCNN.detect needs a model created in 'inference' mode")
        results = []
        step = self.config.BATCH_SIZE
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            outputs, molded, _, windows = self.forward(chunk)
            results += [self.image_result(outputs, i, image.shape, molded.shape[1:3], windows[i])
                        for i, image in enumerate(chunk)]
        return results

    def image_result(self, outputs: dict[str, np.ndarray], index: int, image_shape,
                     molded_shape, window) -> dict[str, np.ndarray]:
        """``detect``'s dict for image ``index`` of a forward pass (sub-classes add fields)."""
        return self.unmold_detections(outputs["detections"][index], outputs["mrcnn_mask"][index],
                                      image_shape, molded_shape, window)

    def forward(self, images: list[np.ndarray]):
        """Mold images and run the inference graph: (outputs, molded, metas, windows)."""
        molded, metas, windows = mold_inputs(images, self.config)
        anchors = get_anchors(self.config, tuple(molded.shape[1:3]))
        batch = {
            "input_image": molded,
            "input_image_meta": metas,
            "input_anchors": np.broadcast_to(anchors, (len(images), *anchors.shape)).copy(),
        }
        return self.run_graph(batch), molded, metas, windows

    @staticmethod
    def returned_rows(detections: np.ndarray, original_image_shape, image_shape, window
                      ) -> np.ndarray:
        """Indices of the detection rows ``detect`` returns: real rows (class id > 0) whose
        box keeps a positive area in the original image. Sub-classes that return more per
        detection (FT-MTL-Net's class probabilities) select their rows with it."""
        real = np.flatnonzero(detections[:, 4] > 0)
        boxes = to_original_pixels(detections[real, :4], image_shape, window,
                                   original_image_shape)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return real[area > 0]

    def unmold_detections(self, detections: np.ndarray, mrcnn_mask: np.ndarray,
                          original_image_shape, image_shape, window) -> dict[str, np.ndarray]:
        """Map one image's detections from the model input back to the original image: the
        rows ``returned_rows`` keeps, in its order."""
        rows = self.returned_rows(detections, original_image_shape, image_shape, window)
        detections, masks = detections[rows], mrcnn_mask[rows]
        class_ids = detections[:, 4].astype(np.int32)
        scores = detections[:, 5].astype(np.float32)
        boxes = to_original_pixels(detections[:, :4], image_shape, window,
                                   original_image_shape)
        # Each detection's mask of its class, all pasted at once.
        class_masks = masks[np.arange(len(boxes)), :, :, class_ids]
        full = unmold_mask(class_masks, boxes, original_image_shape[:2])
        return {"rois": boxes.astype(np.int32), "class_ids": class_ids, "scores": scores,
                "masks": full}


def load_image_gt(dataset, config, image_id: int, augment: bool = False, augmentation=None,
                  use_mini_mask: bool = False):
    """Matterport's ``load_image_gt``: (image, image_meta, class_ids, bbox, mask) of one image,
    resized for the model, with masks at the image's size unless ``use_mini_mask`` (whatever
    the config's USE_MINI_MASK says). ``augment`` (deprecated, as in Matterport) flips the image
    left-right half the time, before ``augmentation``.

    The work is ``mrcnn.data.load_image_gt``'s, the input pipeline's step, which reads
    USE_MINI_MASK from the config and takes a random generator for crops and augmentation.
    """
    config = copy.copy(config)
    config.USE_MINI_MASK = bool(use_mini_mask)
    if augment:
        logger.warning("load_image_gt: 'augment' is deprecated; pass augmentation instead")
        flip = SomeOf((0, 1), [Flip(horizontal=True)])
        augmentation = flip if augmentation is None else Sequential([flip, augmentation])
    return data_lib.load_image_gt(dataset, config, image_id, augmentation=augmentation)


def to_original_pixels(boxes: np.ndarray, image_shape, window, original_shape) -> np.ndarray:
    """Normalised model-input boxes -> original-image pixel boxes (rounded, clipped)."""
    h, w = image_shape[:2]
    wy1, wx1, wy2, wx2 = (float(v) for v in window)
    sy = (wy2 - wy1) / original_shape[0]
    sx = (wx2 - wx1) / original_shape[1]
    px = boxes * np.array([h, w, h, w], np.float32)
    px = (px - np.array([wy1, wx1, wy1, wx1])) / np.array([sy, sx, sy, sx])
    px = np.round(px)
    px[:, [0, 2]] = np.clip(px[:, [0, 2]], 0, original_shape[0])
    px[:, [1, 3]] = np.clip(px[:, [1, 3]], 0, original_shape[1])
    return px
