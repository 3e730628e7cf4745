"""The command line is reproducible by default: ``train`` run twice in fresh processes with the
same command gives the same weights, and ``evaluate`` of the two checkpoints the same metrics;
another ``--seed`` gives other weights. The runs also show that the CLI starts quietly (no
TensorFlow start-up notices, which ``-v`` shows)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from ftmtl.inbreast.synthetic import generate_synthetic_inbreast
from mrcnn.quiet_start import is_startup_notice

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "samples" / "inbreast" / "inbreast.py"
# paper_cpu at 64 px, a batch of 4 images built by two data worker threads: the ROI sampling
# of several images a batch and the threads are what could make two runs differ.
TINY = ["--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64",
        "--set", "DATA_WORKERS=2"]


def cli(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(REPO)}, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def weight_digests(path: Path) -> dict[str, str]:
    """SHA-256 of every array in a weight file (the file's own bytes carry HDF5 metadata)."""
    digests = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: digests.__setitem__(
            name, hashlib.sha256(item[()].tobytes()).hexdigest())
            if isinstance(item, h5py.Dataset) else None)
    return digests


def train(dataset: Path, logs: Path, seed: int) -> tuple[Path, subprocess.CompletedProcess]:
    out = cli("train", "--dataset", str(dataset), *TINY, "--weights", "none", "--steps", "2",
              "--epochs", "2", "--seed", str(seed), "--logs", str(logs))
    checkpoints = sorted(logs.rglob("mask_rcnn_*_0002.h5"))
    assert len(checkpoints) == 1, checkpoints
    return checkpoints[0], out


def evaluate(dataset: Path, weights: Path, out: Path, *flags: str
             ) -> tuple[dict, subprocess.CompletedProcess]:
    run = cli(*flags, "evaluate", "--dataset", str(dataset), "--weights", str(weights), *TINY,
              "--set", "DETECTION_MIN_CONFIDENCE=0.0", "--out", str(out))
    return json.loads((out / "metrics.json").read_text()), run


def notices(text: str) -> list[str]:
    return [line for line in text.splitlines() if is_startup_notice(line)]


@pytest.mark.slow
def test_the_same_train_command_twice_gives_the_same_model_and_metrics(tmp_path):
    dataset = tmp_path / "data"
    generate_synthetic_inbreast(dataset, n_patients=2, seed=1, image_shape=(128, 96))
    first, first_run = train(dataset, tmp_path / "a", seed=3)
    second, _ = train(dataset, tmp_path / "b", seed=3)
    other, _ = train(dataset, tmp_path / "c", seed=4)

    digests = weight_digests(first)
    assert len(digests) > 20
    assert weight_digests(second) == digests
    assert weight_digests(other) != digests

    metrics, quiet = evaluate(dataset, first, tmp_path / "eval_a")
    again, verbose = evaluate(dataset, second, tmp_path / "eval_b", "-v")
    assert metrics["n_cases"] == 8 and again == metrics

    # A log, not a terminal: one line an epoch, no progress-bar redraws (ANSI codes).
    assert "\x1b[" not in first_run.stdout and "\r" not in first_run.stdout
    epoch_lines = [line for line in first_run.stdout.splitlines() if line.startswith("Epoch")]
    assert [line.split(" - ")[0] for line in epoch_lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert "ETA" in epoch_lines[0] and "loss: " in epoch_lines[0] and "done" in epoch_lines[1]
    # Quiet by default: no TensorFlow start-up notice, no oneDNN error line; -v shows them.
    for run in (first_run, quiet):
        assert notices(run.stderr) == [] and "E0000" not in run.stderr
    assert notices(verbose.stderr)
