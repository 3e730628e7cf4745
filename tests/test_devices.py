"""--gpus N: the device plan (0, 1, N GPUs, too many), the GPU_COUNT it implies, the CLI's
errors, a CPU-only training run, and a strategy of two replicas reaching the model that
run_crossval trains."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from ftmtl import cli
from ftmtl.cli import main
from mrcnn.devices import (
    DevicePlan,
    gpu_count_overrides,
    plan_devices,
    replica_strategy,
    strategy_for_gpus,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "crossval_two_replicas.py"
# As tests/test_cli.py: paper_cpu with images prepared at 64 px and crops of 64.
TINY = ["--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64"]
SEEN = len(tf.config.list_physical_devices("GPU"))


def error_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------------------- the plan
@pytest.mark.parametrize("available", [0, 4])
def test_no_gpus_option_leaves_everything_as_it_is(available):
    assert plan_devices(None, available) == DevicePlan(visible_gpus=None, replicas=None,
                                                       mirrored=False)


@pytest.mark.parametrize(("gpus", "available", "plan"), [
    (0, 0, DevicePlan(visible_gpus=0, replicas=1, mirrored=False)),   # CPU only
    (0, 4, DevicePlan(visible_gpus=0, replicas=1, mirrored=False)),   # every GPU hidden
    (1, 2, DevicePlan(visible_gpus=1, replicas=1, mirrored=False)),   # the first GPU
    (3, 4, DevicePlan(visible_gpus=3, replicas=3, mirrored=True)),    # 3 of 4 mirrored
    (4, 4, DevicePlan(visible_gpus=4, replicas=4, mirrored=True)),
])
def test_plan_of_zero_one_and_several_gpus(gpus, available, plan):
    assert plan_devices(gpus, available) == plan


def test_more_gpus_than_tensorflow_sees_names_both_counts():
    with pytest.raises(ValueError, match=r"asked for 3 GPU\(s\), but TensorFlow sees 2"):
        plan_devices(3, 2)
    with pytest.raises(ValueError, match="got -1"):
        plan_devices(-1, 2)


def test_gpu_count_follows_the_gpus_and_must_agree_with_an_explicit_one():
    assert gpu_count_overrides(None, {"GPU_COUNT": 3}) == {}
    assert gpu_count_overrides(0, {}) == {"GPU_COUNT": 1}
    assert gpu_count_overrides(1, {}) == {"GPU_COUNT": 1}
    assert gpu_count_overrides(4, {"GPU_COUNT": 4, "IMAGES_PER_GPU": 2}) == {"GPU_COUNT": 4}
    with pytest.raises(ValueError, match="GPU_COUNT=2 contradicts 4 GPU"):
        gpu_count_overrides(4, {"GPU_COUNT": 2})
    with pytest.raises(ValueError, match="GPU_COUNT=2 contradicts 0 GPU"):
        gpu_count_overrides(0, {"GPU_COUNT": 2})


def test_without_the_option_no_strategy_and_no_device_change():
    visible = tf.config.get_visible_devices()
    assert strategy_for_gpus(None) is None
    assert tf.config.get_visible_devices() == visible


def test_a_strategy_needs_as_many_devices_as_replicas():
    cpus = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(ValueError, match=f"{cpus + 1} replicas need {cpus + 1} CPU devices; "
                                         f"TensorFlow has {cpus}"):
        replica_strategy(cpus + 1, "CPU")


# ---------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("command", [
    ["train", "--dataset", "{tmp}/none"],
    ["crossval", "--dataset", "{tmp}/none", "--out", "{tmp}/out"],
    ["demo", "--out", "{tmp}/demo"],
])
def test_more_gpus_than_seen_is_an_error_before_anything_runs(command, tmp_path, caplog):
    asked = max(2, SEEN + 1)  # 2 on a machine without GPUs
    argv = [part.format(tmp=tmp_path) for part in command]
    assert main(["-q", *argv, "--gpus", str(asked)]) == cli.EXIT_ERROR
    assert error_messages(caplog) == [
        f"asked for {asked} GPU(s), but TensorFlow sees {SEEN} (the driver, "
        "CUDA_VISIBLE_DEVICES or a tensorflow-cpu install decide what it sees)"]
    assert list(tmp_path.iterdir()) == []  # no data generated, no output folder


@pytest.mark.parametrize(("command", "gpus", "count"), [
    (["train", "--dataset", "{tmp}/none"], 0, 2),
    (["crossval", "--dataset", "{tmp}/none", "--out", "{tmp}/out"], 1, 3),
])
def test_a_gpu_count_that_contradicts_gpus_is_an_error(command, gpus, count, tmp_path, caplog):
    argv = [part.format(tmp=tmp_path) for part in command]
    code = main(["-q", *argv, "--gpus", str(gpus), "--set", f"GPU_COUNT={count}"])
    assert code == cli.EXIT_ERROR
    assert error_messages(caplog) == [
        f"GPU_COUNT={count} contradicts {gpus} GPU(s), which train 1 replica(s): leave "
        "GPU_COUNT out or set it to 1"]


def test_a_negative_gpu_count_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "d", "--gpus", "-1"])
    assert stop.value.code == cli.EXIT_ERROR
    assert "--gpus: must be 0 or a positive integer, got -1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    folder = tmp_path_factory.mktemp("inbreast")
    generate_synthetic_inbreast(folder, n_patients=2, seed=1, image_shape=(128, 96))
    return folder


def test_gpus_0_trains_on_the_cpu_only(dataset_dir, tmp_path):
    """In a fresh process, as a user runs it: the GPUs are hidden before TensorFlow starts
    (in this process an earlier test may have started it)."""
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        [sys.executable, "-m", "ftmtl.cli", "train", "--dataset", str(dataset_dir), *TINY,
         "--steps", "1", "--epochs", "1", "--weights", "none", "--logs", str(logs),
         "--gpus", "0", "--nondeterministic"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "INFO mrcnn.devices: training on the CPU only" in run.stderr
    [run_dir] = [d for d in logs.iterdir() if d.is_dir()]
    assert [p.name for p in run_dir.glob("*.h5")] == ["mask_rcnn_ftmtl_paper_cpu_0001.h5"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["GPU_COUNT"] == 1 and config["BATCH_SIZE"] == config["IMAGES_PER_GPU"] == 4


# --------------------------------------------------------------- the strategy reaches the model
def test_build_model_builds_under_the_strategy_given(tmp_path):
    from ftmtl.presets import build_model, make_config

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    config = make_config("paper_cpu", "maskrcnn", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64,
                         PREPARED_IMAGE_SIZE=64)
    model = build_model("inference", config, tmp_path, strategy=strategy)
    assert model.strategy is strategy
    assert model.keras_model.weights[0].value.device.endswith("CPU:0")


def test_crossval_refuses_a_strategy_whose_replicas_differ_from_gpu_count(tmp_path):
    from ftmtl.crossval import run_crossval

    with pytest.raises(ValueError, match=r"the strategy has 1 replica\(s\) but GPU_COUNT is 2"):
        run_crossval(tmp_path / "none", tmp_path / "out", preset="paper_cpu",
                     config_overrides={"GPU_COUNT": 2}, strategy=tf.distribute.get_strategy())
    assert not (tmp_path / "out").exists()


def test_crossval_evaluates_on_one_device_with_one_replicas_batch():
    from ftmtl.crossval import one_device_config
    from ftmtl.presets import make_config

    trained = make_config("fpn_cpu", GPU_COUNT=4)
    single = one_device_config(trained)
    assert (single.GPU_COUNT, single.BATCH_SIZE) == (1, trained.IMAGES_PER_GPU)
    assert (trained.GPU_COUNT, trained.BATCH_SIZE) == (4, 4 * trained.IMAGES_PER_GPU)
    assert single.to_dict() == {**trained.to_dict(), "GPU_COUNT": 1,
                                "BATCH_SIZE": trained.IMAGES_PER_GPU}
    one = make_config("fpn_cpu")
    assert one_device_config(one) is one


@pytest.mark.slow
def test_crossval_trains_under_a_mirrored_strategy_of_two_logical_cpus(dataset_dir, tmp_path):
    """replica_strategy (what --gpus N > 1 builds over GPUs) over two logical CPU devices:
    run_crossval's training model is built under it, with mirrored weights, and trains."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, str(SCRIPT), str(dataset_dir), str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    training, inference = report["built"]
    assert training == {"mode": "training", "ours": True, "replicas": 2, "gpu_count": 2,
                        "mirrored": True}
    # Evaluation runs on TensorFlow's default strategy.
    assert inference["mode"] == "inference" and not inference["ours"]
    assert Path(report["checkpoint"]).name == "mask_rcnn_maskrcnn_paper_cpu_0001.h5"
