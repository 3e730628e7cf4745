"""benchmarks/bench_batch.py: images/s and the gain over batch 1 per preset and phase, and its
refusal of an unknown phase. (The timings themselves are a benchmark's, never a test's.)"""

import bench_batch as bench  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import pytest


def result(preset: str, phase: str, batch: int, median: float) -> dict:
    return {"preset": preset, "phase": phase, "batch": batch, "size": 512,
            "step": {"median_s": median}, "peak_rss_mb": 1000.0 + batch, "others_busy_cores": 0.0}


def rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()[2:]]


def test_report_gives_images_per_second_and_the_gain_over_batch_one():
    text = bench.report([result("paper", "inference", 1, 2.0), result("paper", "inference", 4, 4.0),
                         result("paper", "training", 1, 1.0), result("paper", "training", 2, 2.5)])
    table = rows(text)
    assert [r[4:6] for r in table] == [["0.50", "1.00x"], ["1.00", "2.00x"],
                                       ["1.00", "1.00x"], ["0.80", "0.80x"]]


def test_report_keeps_a_failed_measurement():
    text = bench.report([{"error": "fpn training batch 4: timed out after 900 s"}])
    assert "timed out after 900 s" in text


def test_unknown_phase_is_refused():
    with pytest.raises(SystemExit):
        bench.parse_args(["--phases", "inference,serving"])
