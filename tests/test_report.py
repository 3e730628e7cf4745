"""ftmtl.report: results.md tables from a hand-made summary."""

from __future__ import annotations

from ftmtl.report import results_markdown, write_results_md


def stats(values):
    finite = [v for v in values if v is not None]
    mean = sum(finite) / len(finite) if finite else None
    std = (sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) ** 0.5 if len(finite) > 1 \
        else (0.0 if finite else None)
    return {"values": values, "mean": mean, "std": std, "n": len(finite),
            "n_folds": len(values)}


def summary(n_folds: int = 3) -> dict:
    ours = {
        "ftmtl": {"auc": [0.90, 0.80, 0.85], "auc_detected": [0.95, None, 0.91],
                  "dice": [0.70, 0.72, 0.74], "box_map50": [0.5, 0.6, 0.7]},
        "maskrcnn": {"auc": [0.80, 0.78, 0.76], "auc_detected": [0.85, 0.86, 0.87],
                     "dice": [0.75, 0.77, 0.79], "box_map50": [0.4, 0.5, 0.6]},
    }
    metrics = {}
    for model, values in ours.items():
        metrics[model] = {key: stats(v[:n_folds]) for key, v in values.items()}
        for point in ("0.5", "1", "2", "3.67", "5"):
            metrics[model][f"tpr_at_{point}"] = stats([0.6, 0.7, 0.8][:n_folds])
    comparisons = {"FT-MTL-Net vs Mask R-CNN": {
        "auc": {"t": 3.1, "p": 0.0123, "n": 3} if n_folds > 1 else None,
        "dice": None}}
    return {"dataset_dir": "/data/INbreast", "k": 3, "seed": 0,
            "models": ["ftmtl", "maskrcnn"],
            "folds_done": {"ftmtl": list(range(n_folds)), "maskrcnn": list(range(n_folds))},
            "metrics": metrics, "comparisons": comparisons,
            "counts": {"ftmtl": {"n_masses": 20, "n_missed": 3},
                       "maskrcnn": {"n_masses": 20, "n_missed": 5}},
            "plots": {"roc": "plots/roc.png"}}


def table_after(text: str, heading: str) -> dict[str, list[str]]:
    """Rows of the first table after the heading, keyed by their first cell."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_three_tables_with_our_rows_p_values_and_the_papers(tmp_path):
    path = write_results_md(summary(), tmp_path / "sub" / "results.md")
    text = path.read_text()
    classification = table_after(text, "Table 1.")
    assert classification["Model"] == ["AUC, all cases", "AUC, detected cases (IoU >= 0.4)"]
    assert classification["FT-MTL-Net (ours)"] == ["0.85 +- 0.05", "0.93 +- 0.03 (2 folds)"]
    assert classification["Mask R-CNN (ours)"] == ["0.78 +- 0.02", "0.86 +- 0.01"]
    assert classification["paired t-test p, FT-MTL-Net vs Mask R-CNN"] == ["0.012", "n/a"]
    assert classification["*FT-MTL-Net (paper, real INbreast)*"] == ["-", "0.92 +- 0.01"]
    assert classification["*Mask R-CNN (paper, real INbreast)*"] == ["-", "0.89 +- 0.02"]

    detection = table_after(text, "Table 2.")
    assert detection["Model"][3] == "TPR @ 3.67 FPI" and len(detection["Model"]) == 5
    assert detection["FT-MTL-Net (ours)"] == ["0.70 +- 0.10"] * 5
    assert detection["*FT-MTL-Net (paper, real INbreast)*"] == ["-", "-", "-", "0.91 +- 0.05",
                                                                 "-"]
    assert detection["*Mask R-CNN (paper, real INbreast)*"][3] == "0.85 +- 0.07"

    segmentation = table_after(text, "Table 3.")
    assert segmentation["FT-MTL-Net (ours)"] == ["0.72 +- 0.02", "17 / 20"]
    assert segmentation["Mask R-CNN (ours)"] == ["0.77 +- 0.02", "15 / 20"]
    assert segmentation["*FT-MTL-Net (paper, real INbreast)*"][0] == "0.76 +- 0.03"
    assert segmentation["*Mask R-CNN (paper, real INbreast)*"][0] == "0.79 +- 0.02"
    assert "![roc](plots/roc.png)" in text
    assert "/data/INbreast" in text


def test_one_fold_gives_na_p_values():
    text = results_markdown(summary(n_folds=1))
    classification = table_after(text, "Table 1.")
    assert classification["paired t-test p, FT-MTL-Net vs Mask R-CNN"] == ["n/a", "n/a"]
    assert classification["FT-MTL-Net (ours)"] == ["0.90", "0.95"]  # no spread to show


def test_no_comparison_says_na_and_missing_metrics_are_na():
    data = summary()
    data["comparisons"] = {}
    data["models"] = ["ftmtl"]
    del data["metrics"]["ftmtl"]["dice"]
    text = results_markdown(data)
    assert table_after(text, "Table 1.")["paired t-test p"] == ["n/a", "n/a"]
    assert table_after(text, "Table 3.")["FT-MTL-Net (ours)"][0] == "n/a"
    assert "Mask R-CNN (ours)" not in text
