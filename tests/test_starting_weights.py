"""ftmtl.starting_weights: one reading of the weight words for train, crossval and the
accuracy benchmark; which loader each word calls, which run a loaded file continues."""

from __future__ import annotations

import pytest

import mrcnn.weights
from ftmtl.presets import make_config
from ftmtl.starting_weights import (
    check_weights,
    checkpoint_file,
    default_weights,
    load_starting_weights,
    uses_pretrained_recipe,
)

COCO_EXCLUDED = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]


class RecordingModel:
    """Records what load_starting_weights asks of a model; load_weights moves to the file's
    run unless told not to, as MaskRCNN.load_weights does for a checkpoint."""

    def __init__(self, log_dir, last=None):
        self.log_dir, self.checkpoint_path, self.epoch = str(log_dir), "own_{epoch}", 0
        self.calls, self.last = [], last

    def load_imagenet_weights(self, source):
        self.calls.append(("imagenet", source))
        return type("Report", (), {"summary": lambda self: "ok"})()

    def load_weights(self, path, exclude=None, continue_run=True):
        self.calls.append(("load", str(path), exclude, continue_run))
        if continue_run:
            self.log_dir, self.checkpoint_path, self.epoch = "file's run", "theirs_{epoch}", 7

    def find_last(self):
        if self.last is None:
            raise FileNotFoundError("no checkpoint")
        return self.last


def test_each_word_calls_its_loader(tmp_path, monkeypatch):
    coco = tmp_path / "mask_rcnn_coco.h5"
    coco.write_bytes(b"")
    monkeypatch.setattr(mrcnn.weights, "coco_weights_path", lambda download=True: str(coco))
    model = RecordingModel(tmp_path)
    load_starting_weights(model, "coco")
    assert model.calls == [("load", str(coco), COCO_EXCLUDED, True)]
    model = RecordingModel(tmp_path)
    load_starting_weights(model, "imagenet:/data/resnet50_notop.h5")
    load_starting_weights(model, "imagenet")
    load_starting_weights(model, "none")
    load_starting_weights(model, None)
    assert model.calls == [("imagenet", "/data/resnet50_notop.h5"), ("imagenet", "imagenet")]
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        load_starting_weights(model, str(tmp_path / "nothing.h5"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_starting_weights(model, "last")


def test_a_file_continues_its_run_unless_told_not_to(tmp_path):
    weights = tmp_path / "mask_rcnn_x_0007.h5"
    weights.write_bytes(b"")
    model = RecordingModel(tmp_path / "own", last=str(weights))
    load_starting_weights(model, "last")
    assert model.calls == [("load", str(weights), [], True)]
    assert (model.log_dir, model.epoch) == ("file's run", 7)
    model = RecordingModel(tmp_path / "own")
    load_starting_weights(model, weights, exclude=["mrcnn_mask"], continue_run=False)
    assert model.calls == [("load", str(weights), ["mrcnn_mask"], False)]
    assert (model.log_dir, model.checkpoint_path, model.epoch) == (
        str(tmp_path / "own"), "own_{epoch}", 0)
    with pytest.raises(ValueError, match="'last' resumes a run"):
        load_starting_weights(model, "last", continue_run=False)


def test_imagenet_needs_the_loader():
    class Bare:
        pass

    with pytest.raises(ValueError, match="load_imagenet_weights"):
        load_starting_weights(Bare(), "imagenet")


def test_checkpoint_file_reads_last_or_a_path(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"")
    assert checkpoint_file(RecordingModel(tmp_path, last=str(weights)), "last") == weights
    assert checkpoint_file(RecordingModel(tmp_path), weights) == weights
    with pytest.raises(FileNotFoundError, match="is not a file"):
        checkpoint_file(RecordingModel(tmp_path), tmp_path)


def test_defaults_and_the_recipe_follow_the_backbone_and_last_keeps_the_presets():
    cpu, paper = make_config("fpn_cpu"), make_config("paper")
    assert (default_weights(paper), default_weights(cpu)) == ("imagenet", "none")
    assert not uses_pretrained_recipe("none", paper)
    assert not uses_pretrained_recipe(None, cpu) and uses_pretrained_recipe(None, paper)
    assert uses_pretrained_recipe("imagenet", cpu)
    assert uses_pretrained_recipe("run/mask_rcnn_x_0003.h5", cpu)
    # A resumed run continues the schedule its preset starts with.
    assert not uses_pretrained_recipe("last", cpu)
    assert uses_pretrained_recipe("last", paper)


def test_check_weights_takes_the_words_and_existing_files_only(tmp_path):
    weights = tmp_path / "resnet.h5"
    weights.write_bytes(b"")
    for ok in (None, "none", "imagenet", "coco", "last", f"imagenet:{weights}", weights):
        check_weights(ok)
    check_weights("last", words=("last",))
    check_weights(str(weights), words=("last",))
    with pytest.raises(ValueError, match="'imagenet' is neither a keyword nor a file"):
        check_weights("imagenet", words=("last",))
    with pytest.raises(ValueError, match="does not exist"):
        check_weights(f"imagenet:{tmp_path / 'missing.h5'}")
