"""Checkpoints describe their run: the config inside the .h5 and beside it, rebuilt from the
file alone (also a copy), options checked against it, old and malformed files, and evaluate /
detect with nothing but --weights."""

from __future__ import annotations

import json
import logging
import shutil
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np
import pytest

from ftmtl import cli as inbreast
from ftmtl.cli import main
from ftmtl.from_checkpoint import (
    ARCHITECTURE_SETTINGS,
    INFERENCE_SETTINGS,
    TRAINING_SETTINGS,
    CheckpointMismatchError,
    config_from_checkpoint,
    load_model_from_checkpoint,
    read_checkpoint_run,
    resolve_checkpoint,
)
from ftmtl.model import FTMTLConfig
from ftmtl.presets import make_config
from mrcnn.run_config import ATTRIBUTE, FILE_NAME, RunConfigError, read_run_config

# What the training run below is given: paper_cpu at 64 px, detections kept from 0.05.
TRAIN_OPTIONS = ["--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64",
                 "--set", "DETECTION_MIN_CONFIDENCE=0.05"]
CHECKPOINT = "mask_rcnn_ftmtl_paper_cpu_0001.h5"


def trained_config(**extra):
    """The config of that run, built independently of the checkpoint."""
    return make_config("paper_cpu", "ftmtl", **{
        "PREPARED_IMAGE_SIZE": 64, "IMAGE_MIN_DIM": 64, "DETECTION_MIN_CONFIDENCE": 0.05,
        "STEPS_PER_EPOCH": 1, **extra})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch of one step through `inbreast train`: (dataset, logs, the checkpoint)."""
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    dataset = tmp_path_factory.mktemp("inbreast")
    generate_synthetic_inbreast(dataset, n_patients=2, seed=1, image_shape=(128, 96))
    logs = tmp_path_factory.mktemp("logs")
    assert main(["-q", "train", "--dataset", str(dataset), *TRAIN_OPTIONS, "--steps", "1",
                 "--epochs", "1", "--weights", "none", "--logs", str(logs),
                 "--nondeterministic"]) == 0
    (checkpoint,) = logs.glob(f"*/{CHECKPOINT}")
    return dataset, logs, checkpoint


@pytest.fixture
def copied(run, tmp_path):
    """The checkpoint alone, copied under another name into another folder."""
    target = tmp_path / "elsewhere" / "model.h5"
    target.parent.mkdir()
    shutil.copy(run[2], target)
    return target


# ------------------------------------------------------------------------ what is stored
def test_the_checkpoint_holds_its_run_config_inside_and_beside(run):
    _, _, checkpoint = run
    with h5py.File(checkpoint) as f:
        document = json.loads(f.attrs[ATTRIBUTE])
    assert document["format_version"] == 1
    assert document["project_version"] == version("ftmtl")
    assert document["network"] == "ftmtl.model.FTMTLNet"
    assert document["preset"] == "paper_cpu" and document["model"] == "ftmtl"
    assert document["image_size"] == 64
    assert document["class_names"] == ["BG", "benign", "malignant"]
    assert document["overrides"] == {"PREPARED_IMAGE_SIZE": 64, "IMAGE_MIN_DIM": 64,
                                     "DETECTION_MIN_CONFIDENCE": 0.05, "STEPS_PER_EPOCH": 1}
    assert document["config"] == json.loads(json.dumps(trained_config().to_dict()))
    beside = json.loads((checkpoint.parent / FILE_NAME).read_text())
    assert beside == document


def test_the_rebuilt_config_equals_the_trained_one(run):
    _, _, checkpoint = run
    original = trained_config()
    training = config_from_checkpoint(checkpoint, "training")
    assert isinstance(training, FTMTLConfig)
    assert training.to_dict() == original.to_dict()
    assert training.RPN_ANCHOR_SCALES == original.RPN_ANCHOR_SCALES == (16, 32, 64)
    inference = config_from_checkpoint(checkpoint)
    assert inference.to_dict() == trained_config(IMAGES_PER_GPU=1).to_dict()
    # The rebuilt config keeps its provenance, so a checkpoint it writes in turn says the same.
    assert inference.provenance["preset"] == "paper_cpu"


def test_a_copied_checkpoint_rebuilds_its_model_with_the_same_weights(run, copied):
    _, _, checkpoint = run
    assert config_from_checkpoint(copied).to_dict() == config_from_checkpoint(
        checkpoint).to_dict()
    net = load_model_from_checkpoint(copied)
    assert net.mode == "inference" and net.config.DETECTION_MIN_CONFIDENCE == 0.05
    assert net.class_names == ["BG", "benign", "malignant"]
    layer = net.keras_model.get_layer("tiny_c1_conv1")
    with h5py.File(checkpoint) as f:
        stored = f["tiny_c1_conv1"]["tiny_c1_conv1/kernel:0"][()]
    np.testing.assert_array_equal(layer.get_weights()[0], stored)


def test_every_config_attribute_is_in_exactly_one_group():
    attributes = {name for name in dir(FTMTLConfig) if name.isupper()}
    groups = (ARCHITECTURE_SETTINGS, INFERENCE_SETTINGS, TRAINING_SETTINGS)
    assert set().union(*groups) == attributes
    assert sum(len(g) for g in groups) == len(attributes)


# ------------------------------------------------------------------------------- options
@pytest.mark.parametrize(("options", "message"), [
    ({"preset": "fpn_cpu"}, "--preset: {path} was trained with preset 'paper_cpu'; the option "
                            "gives 'fpn_cpu'"),
    ({"model": "maskrcnn"}, "--model: {path} is a checkpoint of model 'ftmtl'; the option "
                            "gives 'maskrcnn'"),
    ({"image_size": 128}, "--image-size 128: {path} was trained with PREPARED_IMAGE_SIZE=64; "
                          "the option gives 128"),
    ({"BACKBONE": "resnet50"}, "--set BACKBONE: {path} was trained with BACKBONE='tiny'; the "
                               "option gives 'resnet50'"),
    ({"MEAN_PIXEL": (120.0, 116.8, 103.9)}, "--set MEAN_PIXEL: {path} was trained with "
                                            "MEAN_PIXEL=["),
])
def test_an_option_that_contradicts_the_checkpoint_is_an_error(run, options, message):
    _, _, checkpoint = run
    with pytest.raises(CheckpointMismatchError) as error:
        config_from_checkpoint(checkpoint, **options)
    assert message.format(path=checkpoint) in str(error.value)


def test_agreeing_options_and_inference_settings_are_taken(run):
    _, _, checkpoint = run
    config = config_from_checkpoint(
        checkpoint, preset="paper_cpu", model="ftmtl", image_size=64, IMAGE_MIN_DIM=64,
        MEAN_PIXEL=[123.7, 116.8, 103.9], RPN_ANCHOR_SCALES=[16, 32, 64],
        DETECTION_MIN_CONFIDENCE=0.5, POST_NMS_ROIS_INFERENCE=16, LEARNING_RATE=0.1)
    expected = trained_config(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.5,
                              POST_NMS_ROIS_INFERENCE=16, LEARNING_RATE=0.1)
    assert config.to_dict() == expected.to_dict()


def test_last_finds_the_newest_run_of_any_preset(tmp_path):
    runs = {"ftmtl_paper20250101T000000": "mask_rcnn_ftmtl_paper_0004.h5",
            "ftmtl_fpn_cpu20250102T000000": "mask_rcnn_ftmtl_fpn_cpu_0002.h5",
            "maskrcnn_paper20250103T000000": "mask_rcnn_maskrcnn_paper_0001.h5"}
    for folder, name in runs.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(b"")
    assert resolve_checkpoint("last", tmp_path).name == "mask_rcnn_ftmtl_fpn_cpu_0002.h5"
    assert resolve_checkpoint("last", tmp_path, preset="paper").name == (
        "mask_rcnn_ftmtl_paper_0004.h5")
    assert resolve_checkpoint("last", tmp_path, model="maskrcnn").name == (
        "mask_rcnn_maskrcnn_paper_0001.h5")
    with pytest.raises(FileNotFoundError, match="no checkpoint of model 'ftmtl' under"):
        resolve_checkpoint("last", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        resolve_checkpoint(tmp_path / "missing.h5", tmp_path)


# --------------------------------------------------------------- old and malformed files
def test_an_old_checkpoint_takes_its_config_from_the_options(copied, caplog):
    with h5py.File(copied, "a") as f:
        del f.attrs[ATTRIBUTE]
    assert read_checkpoint_run(copied) is None
    with caplog.at_level(logging.INFO, logger="ftmtl.from_checkpoint"):
        config = config_from_checkpoint(copied, preset="paper_cpu", image_size=64,
                                        IMAGE_MIN_DIM=64, DETECTION_MIN_CONFIDENCE=0.05,
                                        STEPS_PER_EPOCH=1)
    # written before checkpoints described their run, so before INTENSITY_WINDOW existed
    assert config.to_dict() == trained_config(IMAGES_PER_GPU=1,
                                              INTENSITY_WINDOW="full_range").to_dict()
    assert f"{copied} has no stored run config" in caplog.text
    assert "the config comes from the options: preset paper_cpu" in caplog.text
    # Without options, as before: the paper preset (whose weights would not fit this file).
    assert config_from_checkpoint(copied).NAME == "ftmtl_paper"
    net = load_model_from_checkpoint(copied, preset="paper_cpu", image_size=64,
                                     IMAGE_MIN_DIM=64)
    assert net.class_names is None and net.config.BACKBONE == "tiny"


def test_a_checkpoint_from_before_the_intensity_window_reads_full_range(copied):
    assert config_from_checkpoint(copied).INTENSITY_WINDOW == "percentile"
    document = _document(copied)
    del document["config"]["INTENSITY_WINDOW"]
    with h5py.File(copied, "a") as f:
        f.attrs[ATTRIBUTE] = json.dumps(document)
    assert config_from_checkpoint(copied).INTENSITY_WINDOW == "full_range"
    # the weights learnt to read one window: another one is a contradiction
    with pytest.raises(CheckpointMismatchError, match="INTENSITY_WINDOW"):
        config_from_checkpoint(copied, INTENSITY_WINDOW="percentile")


def _document(checkpoint: Path) -> dict:
    return read_run_config(checkpoint)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: "{not json", "attribute 'run_config' is not valid JSON"),
    (lambda d: "[1, 2]", "attribute 'run_config' must be a JSON object, got list"),
    (lambda d: {k: v for k, v in d.items() if k != "config"}, "field 'config': missing"),
    (lambda d: {**d, "format_version": 7}, "field 'format_version': 7 was written by a newer"),
    (lambda d: {**d, "class_names": "BG"}, "field 'class_names': must be a list of strings"),
    (lambda d: {**d, "model": "yolo"}, "field 'model': must be one of"),
    (lambda d: {**d, "config": {**d["config"], "POOL_SIZE": "seven"}},
     "field 'config': make_config: POOL_SIZE expects an integer"),
    (lambda d: {**d, "config": {**d["config"], "FEATURE_LAYOUT": "c5"}},
     "FEATURE_LAYOUT: must be one of"),
])
def test_a_malformed_run_config_is_an_error_naming_the_file(copied, change, message):
    changed = change(_document(copied))
    with h5py.File(copied, "a") as f:
        f.attrs[ATTRIBUTE] = changed if isinstance(changed, str) else json.dumps(changed)
    with pytest.raises(RunConfigError) as error:
        config_from_checkpoint(copied)
    assert str(error.value).startswith(f"{copied}: ")
    assert message in str(error.value)


def test_a_plain_mask_rcnn_checkpoint_rebuilds_mask_rcnn(tmp_path):
    from mrcnn.model import MaskRCNN
    from tests.tiny_config import TinyConfig

    config = TinyConfig()
    MaskRCNN("inference", config, tmp_path).save_weights(tmp_path / "tiny.h5")
    net = load_model_from_checkpoint(tmp_path / "tiny.h5", mode="training")
    assert type(net) is MaskRCNN and not isinstance(net.config, FTMTLConfig)
    assert net.config.to_dict() == config.to_dict()


# ----------------------------------------------------------------------- the command line
def test_evaluate_and_detect_need_only_the_weights(run, copied, tmp_path, capsys):
    dataset, logs, _ = run
    out = tmp_path / "eval"
    assert main(["-q", "evaluate", "--dataset", str(dataset), "--weights", "last", "--logs",
                 str(logs), "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["n_cases"] == 8
    dicom = sorted((dataset / "AllDICOMs").glob("*.dcm"))[0]
    found = tmp_path / "found"
    assert main(["-q", "detect", str(dicom), "--weights", str(copied), "--out",
                 str(found)]) == 0
    record = json.loads((found / f"{dicom.stem}.json").read_text())
    assert record["model"] == "ftmtl_paper_cpu" and record["model_input_size"] == 64
    assert f"{dicom}: " in capsys.readouterr().out


def test_a_contradicting_option_on_the_command_line_names_it(run, copied, tmp_path, caplog):
    dataset, _, _ = run
    code = main(["-q", "evaluate", "--dataset", str(dataset), "--weights", str(copied),
                 "--image-size", "96", "--out", str(tmp_path / "o")])
    assert code == inbreast.EXIT_ERROR
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"--image-size 96: {copied} was trained with "
                                f"PREPARED_IMAGE_SIZE=64; the option gives 96")
    assert not (tmp_path / "o").exists()
