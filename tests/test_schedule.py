"""The paper's schedule as data, the stage runner's epoch arithmetic, and what each stage
really trains."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from ftmtl.presets import build_model, make_config
from ftmtl.schedule import (
    SCRATCH_WARMUP_STEPS,
    Stage,
    paper_schedule,
    run_schedule,
    schedule_for,
    scratch_schedule,
)
from mrcnn.model import LOSS_NAMES
from samples.shapes.shapes import ShapesDataset

SIZE = 64
TINY = {"IMAGE_MIN_DIM": SIZE, "IMAGE_MAX_DIM": SIZE, "MEAN_PIXEL": 128.0,
        "RPN_ANCHOR_SCALES": (8, 16, 32, 64), "MASK_HEAD_CHANNELS": 16,
        "STEPS_PER_EPOCH": 1, "NORM": None, "TRAIN_BN": False, "IMAGE_RESIZE_MODE": "square"}

# Layer names of the tiny C4 network, by part.
BACKBONE_LAYERS = ["tiny_c1_conv1", "tiny_c4_conv2", "tiny_c3_bn1"]
RPN_LAYERS = ["rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"]
HEAD_LAYERS = ["mrcnn_bbox_fc", "mrcnn_mask_deconv1", "mrcnn_mask", "mrcnn_ftmtl_class_logits"]


def matches(regex: str, name: str) -> bool:
    return re.fullmatch(regex, name) is not None


# ----------------------------------------------------------------------------------- data
def test_paper_schedule_has_the_three_stages_of_table_1():
    config = make_config("paper_cpu")
    stages = paper_schedule(config)
    assert [s.name for s in stages] == ["rpn", "heads", "all"]
    assert all(s.epochs == 10 and s.learning_rate == 0.005 for s in stages)
    rpn, heads, everything = stages
    for name in BACKBONE_LAYERS:
        assert [matches(s.layers, name) for s in stages] == [True, False, True], name
    for name in RPN_LAYERS:  # stage "all" keeps training the RPN (docs/training.md)
        assert [matches(s.layers, name) for s in stages] == [True, False, True], name
    for name in HEAD_LAYERS + ["mrcnn_class_logits"]:
        assert [matches(s.layers, name) for s in stages] == [False, True, True], name
    assert rpn.loss_weights == {"rpn_class_loss": 1.0, "rpn_bbox_loss": 1.0,
                                "mrcnn_class_loss": 0.0, "mrcnn_bbox_loss": 0.0,
                                "mrcnn_mask_loss": 0.0}
    unified = {"rpn_class_loss": 0.0, "rpn_bbox_loss": 0.0, "mrcnn_class_loss": 1.0,
               "mrcnn_bbox_loss": 1.0, "mrcnn_mask_loss": 1.0}
    assert heads.loss_weights == unified
    assert everything.loss_weights == dict.fromkeys(LOSS_NAMES, 1.0)
    assert all(s.warmup_steps is None and s.decay is None for s in stages)


def test_scratch_schedule_is_one_joint_stage_with_warmup_and_cosine_decay():
    config = make_config("fpn_cpu", STEPS_PER_EPOCH=50, LEARNING_RATE=0.002)
    (joint,) = scratch_schedule(config, epochs=60)
    assert (joint.name, joint.layers, joint.epochs) == ("joint", ".*", 60)
    assert joint.loss_weights is None  # every loss, with the config's weights
    assert (joint.learning_rate, joint.decay) == (0.002, "cosine")
    assert joint.warmup_steps == SCRATCH_WARMUP_STEPS
    # A short stage warms up over a tenth of its steps at most.
    (short,) = scratch_schedule(config, epochs=2, learning_rate=0.01, decay="step")
    assert (short.warmup_steps, short.learning_rate, short.decay) == (10, 0.01, "step")
    assert schedule_for(config, pretrained=False, epochs=4)[0].name == "joint"
    assert [s.name for s in schedule_for(config, pretrained=True, epochs=4)] == [
        "rpn", "heads", "all"]


def test_paper_schedule_follows_the_backbone_and_the_overrides():
    config = make_config("fpn", LOSS_WEIGHTS={"mrcnn_class_loss": 2.0, "mrcnn_bbox_loss": 1.0,
                                              "mrcnn_mask_loss": 0.5})
    rpn, heads, everything = paper_schedule(config, epochs=3, learning_rate=0.01)
    assert (rpn.epochs, heads.learning_rate) == (3, 0.01)
    for name in ("conv1", "res4b_branch2a", "bn5c_branch2c", "fpn_p3"):
        assert matches(rpn.layers, name) and matches(everything.layers, name), name
        assert not matches(heads.layers, name), name
    assert matches(heads.layers, "mrcnn_class_conv1")
    assert heads.loss_weights["mrcnn_class_loss"] == 2.0
    assert heads.loss_weights["mrcnn_mask_loss"] == 0.5


def test_bad_stages_are_refused():
    with pytest.raises(ValueError, match=r"Stage 'x': loss_weights has unknown loss names "
                                         r"\['mask_loss'\]"):
        Stage("x", ".*", {"mask_loss": 1.0})
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        Stage("x", ".*", epochs=-1)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        Stage("x", ".*", learning_rate=0.0)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        Stage("x", ".*", warmup_steps=-1)
    with pytest.raises(ValueError, match="decay must be one of"):
        Stage("x", ".*", decay="linear")


# --------------------------------------------------------------------------------- runner
class RecordingModel:
    """Stands in for MaskRCNN.train to record the calls (the real runs are below)."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch
        self.config = make_config("paper_cpu")
        self.calls: list[dict] = []

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, **kwargs):
        self.calls.append({"epochs": epochs, "learning_rate": learning_rate, "layers": layers,
                           **kwargs})
        self.epoch = epochs
        return epochs


def test_run_schedule_passes_absolute_cumulative_epochs_and_the_stage_settings():
    stages = [Stage("a", "x", {"rpn_class_loss": 1.0}, 2, 0.1),
              Stage("b", "y", None, 3, 0.2), Stage("c", "z", {}, 1, 0.3, 7, "cosine")]
    model = RecordingModel()
    assert run_schedule(model, "train", "val", stages, augmentation="aug",
                        sampler="sampler", verbose=0) == [2, 5, 6]
    assert [c["epochs"] for c in model.calls] == [2, 5, 6]
    assert [c["layers"] for c in model.calls] == ["x", "y", "z"]
    assert [c["learning_rate"] for c in model.calls] == [0.1, 0.2, 0.3]
    first, second, third = (c["loss_weights"] for c in model.calls)
    assert first == {name: float(name == "rpn_class_loss") for name in LOSS_NAMES}
    assert second == model.config.LOSS_WEIGHTS  # None: the config's weights
    assert third == dict.fromkeys(LOSS_NAMES, 0.0)
    assert all(c["augmentation"] == "aug" and c["sampler"] == "sampler" and c["verbose"] == 0
               for c in model.calls)
    assert [(c["lr_warmup_steps"], c["lr_decay"]) for c in model.calls] == [
        (None, None), (None, None), (7, "cosine")]


def test_a_resumed_model_skips_finished_stages_and_completes_the_current_one():
    stages = [Stage("a", "x", None, 2), Stage("b", "y", None, 3), Stage("c", "z", None, 1)]
    model = RecordingModel(epoch=3)
    run_schedule(model, None, None, stages)
    assert [(c["layers"], c["epochs"]) for c in model.calls] == [("y", 5), ("z", 6)]
    done = RecordingModel(epoch=6)
    assert run_schedule(done, None, None, stages) == [] and done.calls == []


# ------------------------------------------------------------------------------ real runs
def weights_by_layer(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Every weight (trainable or not) by layer name, nested models included."""
    found: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(weights_by_layer(layer))
        elif layer.weights:
            found[layer.name] = [np.array(w.numpy()) for w in layer.weights]
    return found


class Snapshots(keras.callbacks.Callback):
    """Weights at the start and end of every ``train`` call (one per stage)."""

    def __init__(self, owner) -> None:
        super().__init__()
        self.owner = owner
        self.stages: list[tuple[dict, dict]] = []

    def on_train_begin(self, logs=None):
        self._start = weights_by_layer(self.owner.keras_model)

    def on_train_end(self, logs=None):
        self.stages.append((self._start, weights_by_layer(self.owner.keras_model)))


def changed_layers(before: dict, after: dict) -> set[str]:
    return {name for name in before
            if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name],
                                                             strict=True))}


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory):
    dataset = ShapesDataset()
    dataset.load_shapes(4, SIZE, SIZE, seed=5)
    dataset.prepare()
    config = make_config("paper_cpu", **TINY)
    net = build_model("training", config, tmp_path_factory.mktemp("schedule"))
    snapshots = Snapshots(net)
    histories = run_schedule(net, dataset, None, paper_schedule(config, epochs=1),
                             custom_callbacks=[snapshots], verbose=0)
    return snapshots.stages, histories, net


def is_backbone(name: str) -> bool:
    return name.startswith("tiny_")


def test_stage_rpn_changes_only_backbone_and_rpn_weights(stage_runs):
    (before, after), _, _ = stage_runs[0]
    changed = changed_layers(before, after)
    assert changed, "the rpn stage changed nothing"
    assert all(is_backbone(n) or n.startswith("rpn_") for n in changed), changed
    assert set(RPN_LAYERS) <= changed
    assert {"tiny_c1_conv1", "tiny_c4_conv2"} <= changed
    # TRAIN_BN False: batch normalisation stays frozen, statistics included.
    assert not any("_bn" in n for n in changed), changed


def test_stage_heads_leaves_backbone_and_rpn_unchanged(stage_runs):
    _, (before, after), _ = stage_runs[0]
    changed = changed_layers(before, after)
    assert changed and all(n.startswith("mrcnn_") for n in changed), changed
    assert {"mrcnn_bbox_fc", "mrcnn_mask_deconv1", "mrcnn_mask_deconv2", "mrcnn_mask",
            "mrcnn_ftmtl_class_logits"} <= changed


def test_each_stage_optimises_its_own_losses(stage_runs):
    _, histories, net = stage_runs
    rpn, heads, everything = (h.history for h in histories)
    assert rpn["loss"][0] == pytest.approx(rpn["rpn_class_loss"][0] + rpn["rpn_bbox_loss"][0],
                                           rel=1e-5)
    head_total = sum(heads[name][0] for name in
                     ("mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"))
    assert heads["loss"][0] == pytest.approx(head_total, rel=1e-5)
    assert heads["rpn_class_loss"][0] > 0  # computed and logged, but weighing 0
    all_total = sum(everything[name][0] for name in LOSS_NAMES)
    assert everything["loss"][0] == pytest.approx(all_total, rel=1e-5)
    assert net.epoch == 3


def test_stage_all_trains_backbone_rpn_and_heads(stage_runs):
    _, _, (before, after) = stage_runs[0]
    changed = changed_layers(before, after)
    assert set(RPN_LAYERS) <= changed
    assert {"tiny_c1_conv1", "tiny_c4_conv2", "mrcnn_bbox_fc", "mrcnn_mask_deconv2",
            "mrcnn_ftmtl_class_logits"} <= changed
    assert not any("_bn" in n for n in changed), changed  # frozen BN stays frozen
