"""benchmarks/bench_workers.py: its report (the cluster's step is its slowest worker's) and
its ports. The timing run itself is a benchmark, not a test (tests/test_multiworker.py checks
that two workers train as one)."""

import bench_workers as bench  # benchmarks/ is on pytest's pythonpath (pyproject.toml)


def result(count: int, index: int, times: list[float], batch: int) -> dict:
    return {"workers": count, "index": index, "threads": 2 // count, "images_per_worker": 4,
            "global_batch": batch, "parameters": 1_000_000, "step": {"times_s": times}}


def test_report_takes_the_slowest_worker_and_compares_with_one():
    runs = {1: [result(1, 0, [0.2, 0.25, 0.3], 4)],
            2: [result(2, 0, [0.4, 0.4, 0.4], 8), result(2, 1, [0.5, 0.5, 0.6], 8)]}
    text = bench.report(runs)
    lines = [line for line in text.splitlines() if line.startswith("| 1 ") or
             line.startswith("| 2 ")]
    one, two = (line.split("|")[1:-1] for line in lines)
    assert [c.strip() for c in one[:6]] == ["1", "2", "4", "0.250", "16.0", "1.00x"]
    # 8 images in the slower worker's median step, 0.5 s: 16 images/s, as fast as one worker
    assert [c.strip() for c in two[:6]] == ["2", "1", "8", "0.500", "16.0", "1.00x"]
    assert "1,000,000 float32 values (3.8 MiB)" in text


def test_report_names_a_failed_cluster():
    text = bench.report({2: [{"error": "2 workers, worker 1: no result"}]})
    assert "2 workers, worker 1: no result" in text


def test_free_ports_are_distinct():
    ports = bench.free_ports(3)
    assert len(set(ports)) == 3 and all(p > 0 for p in ports)
