"""Checkpoint files: by-name layout, atomic writes, finding the last one."""

import os
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from mrcnn import checkpoint
from mrcnn.weights import load_legacy_h5


def small_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inner_in = keras.Input((None, None, 4))
    inner = keras.Model(inner_in, keras.layers.Conv2D(2, 1, name="rpn_conv_shared")(inner_in),
                        name="rpn_model")
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(x_in)
    x = keras.layers.BatchNormalization(name="bn_conv1")(x)
    return keras.Model(x_in, inner(x))


def test_save_then_load_by_name(tmp_path):
    a, b = small_model(1), small_model(2)
    path = tmp_path / "mask_rcnn_x_0001.h5"
    checkpoint.save_weights_h5(a, path)
    with h5py.File(path) as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == ["conv1", "bn_conv1", "rpn_model"]
        assert [n.decode() for n in f["rpn_model"].attrs["weight_names"]] == [
            "rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0"]
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype(np.float32)
    assert not np.allclose(a(x), b(x))
    report = load_legacy_h5(b, path)
    np.testing.assert_array_equal(a(x), b(x))
    assert set(report.loaded) >= {"conv1", "bn_conv1", "rpn_conv_shared"}


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.h5"
    path.write_text("old")

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(path, broken)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["ckpt.h5"]


def test_find_last_and_epoch(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.find_last_checkpoint(tmp_path, "shapes")
    old = tmp_path / "shapes20260101T000000"
    new = tmp_path / "shapes20260102T000000"
    for d in (old, new):
        d.mkdir()
    (old / "mask_rcnn_shapes_0009.h5").write_bytes(b"")
    (new / "mask_rcnn_shapes_0001.h5").write_bytes(b"")
    (new / "mask_rcnn_shapes_0002.h5").write_bytes(b"")
    (new / ".mask_rcnn_shapes_0003.h5.abc.tmp").write_bytes(b"")
    last = checkpoint.find_last_checkpoint(tmp_path, "shapes")
    assert last == new / "mask_rcnn_shapes_0002.h5"
    assert checkpoint.checkpoint_epoch(last) == 2
    assert checkpoint.checkpoint_epoch("weights.h5") is None


def test_new_log_dir_is_unique(tmp_path):
    a = checkpoint.new_log_dir(tmp_path, "Shapes")
    a.mkdir()
    b = checkpoint.new_log_dir(tmp_path, "Shapes")
    assert a != b and a.name.startswith("shapes")


def test_find_last_does_not_mix_configurations_with_a_common_prefix(tmp_path):
    mine = tmp_path / "paper20260101T000000"
    other = tmp_path / "paper_cpu20260102T000000"
    for d in (mine, other):
        d.mkdir()
    (mine / "mask_rcnn_paper_0001.h5").write_bytes(b"")
    (other / "mask_rcnn_paper_cpu_0003.h5").write_bytes(b"")
    assert checkpoint.find_last_checkpoint(tmp_path, "paper") == mine / "mask_rcnn_paper_0001.h5"


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    names = ["mask_rcnn_x_0001.h5", "mask_rcnn_x_0002.h5", "mask_rcnn_x_0010.h5",
             "mask_rcnn_x_0003.h5", ".mask_rcnn_x_0011.h5.abc.tmp", "events.out", "notes.h5"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = checkpoint.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["mask_rcnn_x_0001.h5", "mask_rcnn_x_0002.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".mask_rcnn_x_0011.h5.abc.tmp", "events.out", "mask_rcnn_x_0003.h5",
         "mask_rcnn_x_0010.h5", "notes.h5"])
    assert checkpoint.prune_checkpoints(tmp_path, keep=5) == []
    with pytest.raises(ValueError, match="keep"):
        checkpoint.prune_checkpoints(tmp_path, keep=0)


def test_building_a_model_writes_nothing_until_training_starts(tmp_path):
    """The run folder is made by train(), not by the constructor: a model only built (to
    evaluate, or to resume another run) leaves no empty folder behind."""
    from tiny_config import TinyConfig

    from mrcnn.model import MaskRCNN

    model = MaskRCNN("training", TinyConfig(), tmp_path)
    assert list(tmp_path.iterdir()) == []
    first = model.log_dir
    # Another run took the name meanwhile: training moves to the next free one.
    (tmp_path / Path(first).name).mkdir()
    model._claim_log_dir()
    assert model.log_dir != first and Path(model.log_dir).is_dir()
    assert model.checkpoint_path.startswith(model.log_dir)
    model._claim_log_dir()  # the same model again (the next stage): same folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(first).name, Path(model.log_dir).name])
