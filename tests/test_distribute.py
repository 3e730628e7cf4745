"""Training under tf.distribute.MirroredStrategy equals training on one device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "distribute_step.py"


def run_step(mode: str, tmp_path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parents[2]), TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, str(SCRIPT), mode, str(tmp_path / mode)],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device(tmp_path):
    single = run_step("single", tmp_path)
    mirrored = run_step("mirrored", tmp_path)
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-4)
    # the same update: gradients are averaged, not summed, across replicas
    assert mirrored["weights"] == pytest.approx(single["weights"], rel=1e-4)
