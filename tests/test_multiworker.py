"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train as one.

Each worker is a separate process with its own TF_CONFIG (the README's "several machines"
recipe, on one machine); they exchange gradients over gRPC on local ports.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_workers import free_ports  # benchmarks/ is on pytest's pythonpath

SCRIPT = Path(__file__).parent / "scripts" / "multiworker_step.py"
STEPS = 2


def script_env(tf_config: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parents[2]), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def result(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def run_single(tmp_path) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), "single", str(tmp_path / "single"),
                           str(STEPS)], capture_output=True, text=True, env=script_env(),
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return result(done.stdout)


def run_two_workers(tmp_path) -> list[dict]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [subprocess.Popen(
        [sys.executable, str(SCRIPT), "worker", str(tmp_path / f"worker{index}"), str(STEPS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=script_env({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        for index in range(2)]
    outputs = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=600)
            assert worker.returncode == 0, stderr[-3000:]
            outputs.append(result(stdout))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    return outputs


@pytest.mark.slow
def test_two_local_workers_train_as_one(tmp_path):
    first, second = run_two_workers(tmp_path)
    single = run_single(tmp_path)
    assert first["replicas"] == second["replicas"] == 2 and single["replicas"] == 1
    # Both workers apply the same all-reduced update at every step.
    assert first["digest"] == second["digest"]
    assert first["losses"] == pytest.approx(second["losses"], rel=1e-6)
    # A global step over two workers equals one worker's step on the same global batch:
    # the gradients are averaged across workers, not summed.
    assert first["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert first["sums"].keys() == single["sums"].keys()
    for name, value in single["sums"].items():
        assert first["sums"][name] == pytest.approx(value, rel=1e-5, abs=1e-8), name
