"""Kill and resume: a training run killed with SIGKILL resumes from its last complete checkpoint,
a kill during a checkpoint write never leaves a corrupt checkpoint under a final name, and the
optimizer's state (iterations, momentum, the learning-rate schedule's step) resumes too."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from tiny_config import TinyShapesConfig

from mrcnn import checkpoint
from mrcnn.config import ConfigError
from mrcnn.model import MaskRCNN
from mrcnn.weights import load_legacy_h5
from samples.shapes.shapes import ShapesDataset

SCRIPTS = Path(__file__).parent / "scripts"
REPO = SCRIPTS.parents[1]
STEPS = 2


def script_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONUNBUFFERED="1")


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def snapshot(optimizer) -> dict[str, np.ndarray]:
    """Every optimizer variable by checkpoint key, plus the current learning rate."""
    values = {checkpoint.optimizer_variable_key(optimizer, v): np.array(v.numpy())
              for v in optimizer.variables}
    values["current_learning_rate"] = np.array(optimizer.learning_rate.numpy())
    return values


class RecordOptimizer(keras.callbacks.Callback):
    """The optimizer's variables when training starts (None if not built yet) and after each
    epoch (1-based)."""

    def __init__(self) -> None:
        super().__init__()
        self.at_start = None
        self.after_epoch: dict[int, dict[str, np.ndarray]] = {}

    def on_train_begin(self, logs=None) -> None:
        optimizer = self.model.optimizer
        self.at_start = snapshot(optimizer) if optimizer.built else None

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.after_epoch[epoch + 1] = snapshot(self.model.optimizer)


class ResumeConfig(TinyShapesConfig):
    NAME = "resume"
    IMAGES_PER_GPU = 1
    STEPS_PER_EPOCH = STEPS
    DATA_WORKERS = 1


def decaying_rate() -> keras.optimizers.schedules.LearningRateSchedule:
    return keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.8)


def shapes(count: int, seed: int) -> ShapesDataset:
    ds = ShapesDataset()
    ds.load_shapes(count, 64, 64, seed=seed)
    ds.prepare()
    return ds


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A trains epochs 1-2 in one call (checkpoint 1 mid-call, checkpoint 2 at its end);
    model B is a fresh model the tests resume into."""
    model_dir = tmp_path_factory.mktemp("resume")
    config = ResumeConfig()
    data = shapes(4, seed=2)
    keras.utils.set_random_seed(5)
    first = MaskRCNN("training", config, model_dir)
    record = RecordOptimizer()
    first.train(data, None, learning_rate=decaying_rate(), epochs=2, layers="all",
                custom_callbacks=[record], verbose=0)
    run_dir = Path(first.log_dir)
    keras.utils.set_random_seed(6)
    second = MaskRCNN("training", config, model_dir)
    return {"config": config, "data": data, "record": record, "second": second,
            "ckpt": {e: run_dir / f"mask_rcnn_resume_{e:04d}.h5" for e in (1, 2)}}


def test_checkpoint_holds_the_optimizer_state(runs):
    saved = runs["record"].after_epoch[1]
    assert float(np.abs(saved["mrcnn_mask_kernel_momentum"]).sum()) > 0
    state = checkpoint.read_optimizer_state(runs["ckpt"][1])
    assert state.optimizer_class == "SGD"
    assert state.attrs["epoch"] == 1 and state.attrs["train_epochs"] == 2
    assert int(state.values["iteration"]) == STEPS
    assert set(state.values) == set(saved) - {"current_learning_rate"}
    for key, value in state.values.items():
        np.testing.assert_array_equal(value, saved[key], err_msg=key)
    # the weight readers pass the optimizer group by
    inference = MaskRCNN("inference", runs["config"], runs["ckpt"][1].parent)
    report = inference.load_weights(runs["ckpt"][1])
    assert not report.unused_in_file and "mrcnn_mask" in report.loaded


def test_resume_restores_iterations_momentum_and_schedule(runs):
    model, saved = runs["second"], runs["record"].after_epoch[1]
    model.load_weights(runs["ckpt"][1])
    assert model.epoch == 1
    record = RecordOptimizer()
    history = model.train(runs["data"], None, learning_rate=decaying_rate(), epochs=2,
                          layers="all", custom_callbacks=[record], verbose=0)
    assert history.epoch == [1]
    assert record.at_start is not None and set(record.at_start) == set(saved)
    for key, value in saved.items():
        np.testing.assert_array_equal(record.at_start[key], value, err_msg=key)
    assert int(record.at_start["iteration"]) == STEPS
    # the schedule's step continues: 0.01 * 0.8**iterations
    assert float(record.at_start["current_learning_rate"]) == pytest.approx(0.01 * 0.8 ** STEPS)
    assert int(record.after_epoch[2]["iteration"]) == 2 * STEPS
    assert model.log_dir == str(runs["ckpt"][1].parent)


def test_weights_without_the_run_start_a_fresh_run_and_optimizer(runs, tmp_path):
    config = runs["config"]
    keras.utils.set_random_seed(8)
    model = MaskRCNN("training", config, tmp_path)
    own_dir = model.log_dir
    model.load_weights(runs["ckpt"][1], continue_run=False)
    assert (model.log_dir, model.epoch, model._resume_optimizer) == (own_dir, 0, None)
    record = RecordOptimizer()
    model.train(runs["data"], None, learning_rate=decaying_rate(), epochs=1, layers="all",
                custom_callbacks=[record], verbose=0)
    # the optimizer starts from nothing: one epoch later it has counted one epoch's steps
    assert int(record.after_epoch[1]["iteration"]) == STEPS
    assert Path(model.log_dir).parent == tmp_path


def test_other_trainable_layers_start_a_fresh_optimizer(runs, caplog):
    model = runs["second"]
    model.load_weights(runs["ckpt"][1])
    record = RecordOptimizer()
    with caplog.at_level(logging.INFO, logger="mrcnn.model"):
        model.train(runs["data"], None, learning_rate=0.01, epochs=2, layers="heads",
                    custom_callbacks=[record], verbose=0)
    assert "not restored: the trainable layers differ" in caplog.text
    assert record.at_start is None
    assert int(record.after_epoch[2]["iteration"]) == STEPS


def test_a_checkpoint_that_ends_its_call_starts_a_fresh_optimizer(runs, caplog):
    model = runs["second"]
    model.load_weights(runs["ckpt"][2])
    record = RecordOptimizer()
    with caplog.at_level(logging.INFO, logger="mrcnn.model"):
        model.train(runs["data"], None, learning_rate=0.01, epochs=3, layers="all",
                    custom_callbacks=[record], verbose=0)
    assert "ends its train() call" in caplog.text
    assert int(record.after_epoch[3]["iteration"]) == STEPS


def test_restore_matches_by_path_not_optimizer_name(tmp_path):
    """Keras numbers optimizer names per process (sgd, sgd_1): keys leave the name out."""

    def fitted(optimizer) -> keras.Model:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
        model.compile(optimizer=optimizer, loss="mse")
        x = np.arange(12, dtype=np.float32).reshape(4, 3)
        model.fit(x, np.ones((4, 2), np.float32), epochs=3, batch_size=2, verbose=0)
        return model

    first = fitted(keras.optimizers.SGD(0.01, momentum=0.9))
    path = tmp_path / "mask_rcnn_x_0003.h5"
    checkpoint.save_weights_h5(first, path, optimizer=first.optimizer)
    other = keras.optimizers.SGD(0.5, momentum=0.9, name="renamed")
    state = checkpoint.read_optimizer_state(path)
    assigned = checkpoint.restore_optimizer_state(other, first.trainable_variables, state)
    assert set(assigned) == {"iteration", "head_kernel_momentum", "head_bias_momentum"}
    assert int(other.iterations.numpy()) == 6
    for mine, theirs in zip(other.variables, first.optimizer.variables, strict=True):
        if not mine.path.endswith("learning_rate"):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert float(other.learning_rate.numpy()) == pytest.approx(0.5)  # the new rate wins
    with pytest.raises(ValueError, match="written by SGD, the run uses Adam"):
        checkpoint.restore_optimizer_state(keras.optimizers.Adam(), first.trainable_variables,
                                           state)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    script = str(SCRIPTS / "resumable_train.py")
    epochs = 5
    proc = subprocess.Popen([sys.executable, script, str(tmp_path), str(epochs), "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=script_env())
    try:
        deadline = time.monotonic() + 400
        while not list(tmp_path.glob("killme*/mask_rcnn_killme_0001.h5")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.3)  # into epoch 2: 3 batches of at least 0.2 s each
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = tmp_path.glob("killme*")
    done = sorted(run_dir.glob("mask_rcnn_killme_*.h5"))
    last = checkpoint.find_last_checkpoint(tmp_path, "killme")
    killed_at = checkpoint.checkpoint_epoch(last)
    assert 1 <= killed_at < epochs and last == done[-1]
    for path in done:  # every file under a final name is complete
        with h5py.File(path) as f:
            assert "mrcnn_mask" in f and "optimizer_weights" in f

    out = subprocess.run([sys.executable, script, str(tmp_path), str(epochs), "0", "--resume"],
                         capture_output=True, text=True, env=script_env(), timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = last_json_line(out.stdout)
    assert result["resumed_from"] == str(last)
    assert result["start_epoch"] == killed_at
    assert result["history_epochs"] == list(range(killed_at, epochs))
    assert result["iterations_at_start"] == killed_at * 3
    assert result["iterations_at_end"] == epochs * 3
    assert result["log_dir"] == str(run_dir)
    assert result["last"] == str(run_dir / f"mask_rcnn_killme_{epochs:04d}.h5")
    assert result["layers_loaded"] > 10 and result["detect_ok"]
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_kill_during_a_checkpoint_write_keeps_the_last_checkpoint(tmp_path):
    run_dir = tmp_path / "x20260101T000000"
    run_dir.mkdir()
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "interrupted_checkpoint_write.py"),
                             str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=script_env())
    try:
        line = proc.stdout.readline()
        assert line.startswith("WRITING"), (line, proc.communicate()[1][-3000:])
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    names = sorted(p.name for p in run_dir.iterdir())
    partial = [n for n in names if n.startswith(".mask_rcnn_x_0002.h5.") and n.endswith(".tmp")]
    assert len(partial) == 1, names
    assert "mask_rcnn_x_0002.h5" not in names
    last = checkpoint.find_last_checkpoint(tmp_path, "x")
    assert last == run_dir / "mask_rcnn_x_0001.h5"

    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn_conv1")(x)
    fresh = keras.Model(inputs, keras.layers.Dense(2, name="mrcnn_class_logits")(x))
    report = load_legacy_h5(fresh, last)
    assert report.loaded == ["bn_conv1", "conv1", "mrcnn_class_logits"]
    np.testing.assert_array_equal(fresh.get_layer("conv1").kernel.numpy(),
                                  np.load(run_dir / "conv1_kernel_epoch1.npy"))
    assert int(checkpoint.read_optimizer_state(last).values["iteration"]) == 2

    removed = checkpoint.remove_stale_temp_files(run_dir)
    assert [p.name for p in removed] == partial
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(set(names) - set(partial))


def test_only_final_names_are_checkpoints(tmp_path):
    run = tmp_path / "shapes20260101T000000"
    run.mkdir()
    for name in ("mask_rcnn_shapes_0001.h5", ".mask_rcnn_shapes_0003.h5.k2j_4x.tmp",
                 "mask_rcnn_shapes_0004.h5.tmp", "old_mask_rcnn_shapes_0005.h5"):
        (run / name).write_bytes(b"")
    (run / "mask_rcnn_shapes_0006.h5").mkdir()  # not a file
    assert checkpoint.find_last_checkpoint(tmp_path, "shapes") == run / "mask_rcnn_shapes_0001.h5"
    assert [p.name for p in checkpoint.remove_stale_temp_files(run)] == [
        ".mask_rcnn_shapes_0003.h5.k2j_4x.tmp"]


def test_keep_checkpoints_leaves_the_newest_and_resumes_from_it(tmp_path):
    class KeepTwo(ResumeConfig):
        NAME = "keeptwo"
        KEEP_CHECKPOINTS = 2

    model = MaskRCNN("training", KeepTwo(), tmp_path)
    model.train(shapes(2, seed=3), None, learning_rate=0.001, epochs=3, layers="heads",
                verbose=0)
    names = sorted(p.name for p in Path(model.log_dir).glob("mask_rcnn_*.h5"))
    assert names == ["mask_rcnn_keeptwo_0002.h5", "mask_rcnn_keeptwo_0003.h5"]
    assert Path(model.find_last()).name == "mask_rcnn_keeptwo_0003.h5"


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_keep_checkpoints_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match="KEEP_CHECKPOINTS"):
        type("Bad", (ResumeConfig,), {"KEEP_CHECKPOINTS": value})()


class EpochLosses(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.losses = []

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.losses.append(float(logs["loss"]))


def test_the_best_epoch_by_a_named_metric_is_kept_apart(tmp_path, caplog):
    class Best(ResumeConfig):
        NAME = "bestrun"
        BEST_CHECKPOINT_METRIC = "loss"

    model = MaskRCNN("training", Best(), tmp_path / "all")
    losses = EpochLosses()
    model.train(shapes(2, seed=3), None, learning_rate=0.001, epochs=3, layers="heads",
                custom_callbacks=[losses], verbose=0)
    run = Path(model.log_dir)
    best_epoch = int(np.argmin(losses.losses)) + 1
    record = checkpoint.read_best_record(run)
    assert record["metric"] == "loss" and record["epoch"] == best_epoch
    assert record["value"] == pytest.approx(min(losses.losses))
    best = checkpoint.best_checkpoint_path(run, "bestrun")
    assert best.name == "mask_rcnn_bestrun_best.h5"
    assert best.read_bytes() == (run / f"mask_rcnn_bestrun_{best_epoch:04d}.h5").read_bytes()
    assert Path(model.find_last()).name == "mask_rcnn_bestrun_0003.h5"  # not the best copy

    # KEEP_CHECKPOINTS deletes epochs, never the best copy.
    class KeepOne(Best):
        KEEP_CHECKPOINTS = 1

    model = MaskRCNN("training", KeepOne(), tmp_path / "one")
    model.train(shapes(2, seed=3), None, learning_rate=0.001, epochs=2, layers="heads",
                verbose=0)
    assert sorted(p.name for p in Path(model.log_dir).glob("*.h5")) == [
        "mask_rcnn_bestrun_0002.h5", "mask_rcnn_bestrun_best.h5"]

    # A metric the log does not have (no validation set) is said once; nothing is kept.
    class NoValidation(Best):
        BEST_CHECKPOINT_METRIC = "val_loss"

    model = MaskRCNN("training", NoValidation(), tmp_path / "noval")
    with caplog.at_level(logging.WARNING, logger="mrcnn.model"):
        model.train(shapes(2, seed=3), None, learning_rate=0.001, epochs=2, layers="heads",
                    verbose=0)
    assert caplog.text.count("BEST_CHECKPOINT_METRIC 'val_loss' is not in the epoch log") == 1
    assert checkpoint.read_best_record(model.log_dir) is None


def test_improves_reads_the_metric_name():
    assert checkpoint.improves("val_loss", 0.5, 0.6) and not checkpoint.improves("loss", 0.7, 0.6)
    assert checkpoint.improves("val_tpr_at_1", 0.7, 0.6)
    assert not checkpoint.improves("val_tpr_at_1", 0.5, 0.6)
    assert checkpoint.improves("loss", 3.0, None)
    assert not checkpoint.improves("loss", float("nan"), None)


@pytest.mark.parametrize("value", ["", 3, ("loss",)])
def test_best_checkpoint_metric_must_be_a_name(value):
    with pytest.raises(ConfigError, match="BEST_CHECKPOINT_METRIC"):
        type("Bad", (ResumeConfig,), {"BEST_CHECKPOINT_METRIC": value})()
