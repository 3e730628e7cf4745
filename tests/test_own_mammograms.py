"""Datasets that are not INbreast on the command line: --dataset-format and its options, the
README's "Your own mammograms" commands run on a generated dataset, and the same data scored
the same in every format."""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from own_data_files import CSV_COLUMNS, inbreast_truth, write_coco, write_csv

from ftmtl import cli as inbreast
from ftmtl.cli import build_parser, dataset_spec, main
from ftmtl.crossval import _subset
from ftmtl.datasets.coco_format import CocoDataset
from ftmtl.datasets.loader import DATASET_FORMATS, DatasetSpec, load_dataset

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools, numpy 2
REPO = Path(__file__).resolve().parents[1]
# As tests/test_cli.py: paper_cpu crops of images prepared at 64 px.
TINY = ["--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64"]


@pytest.fixture(scope="module")
def inbreast_root(tmp_path_factory):
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    root = tmp_path_factory.mktemp("inbreast")
    generate_synthetic_inbreast(root, n_patients=5, seed=3, image_shape=(128, 96))
    return root


@pytest.fixture(scope="module")
def csv_root(inbreast_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("my_mammograms")
    write_csv(inbreast_truth(inbreast_root), root)
    return root


# ----------------------------------------------------------------------------- options
def test_the_cli_spells_the_formats_of_the_loader():
    assert inbreast.DATASET_FORMAT_NAMES == DATASET_FORMATS


@pytest.mark.parametrize("command", ["train", "evaluate", "crossval"])
def test_the_dataset_options_become_one_spec(command):
    extra = {"train": [], "evaluate": ["--weights", "w.h5", "--out", "o"],
             "crossval": ["--out", "o"]}[command]
    args = build_parser().parse_args([
        command, "--dataset", "D", "--dataset-format", "csv", "--annotations", "a.csv",
        "--columns", "image=path", "--label-map", "x=benign", "--bits-stored", "12", *extra])
    assert dataset_spec(args) == DatasetSpec("D", format="csv", annotations="a.csv",
                                             columns="image=path", label_map="x=benign",
                                             bits_stored=12)
    default = dataset_spec(build_parser().parse_args([command, "--dataset", "D", *extra]))
    assert default == DatasetSpec("D")
    rois = build_parser().parse_args([command, "--dataset", "D", "--mass-rois",
                                      "Mass, Spiculated Region", *extra])
    assert dataset_spec(rois).mass_names == ("Mass", "Spiculated Region")


def test_options_of_another_format_are_refused():
    with pytest.raises(ValueError, match="dataset format inbreast: columns do.es. not apply"):
        DatasetSpec("D", columns="image=path")
    with pytest.raises(ValueError, match="dataset format coco: mass_names do.es. not apply"):
        DatasetSpec("D", format="coco", mass_names=("Mass",))
    with pytest.raises(ValueError, match="dataset format 'voc'; expected one of inbreast, "
                                         "coco, csv"):
        DatasetSpec("D", format="voc")


def test_a_bad_option_is_an_error_before_training(tmp_path, caplog):
    code = main(["-q", "train", "--dataset", str(tmp_path), "--columns", "image=path", *TINY])
    assert code == inbreast.EXIT_ERROR
    assert "dataset format inbreast: columns do(es) not apply" in caplog.text


def test_a_dataset_without_usable_images_is_an_error(tmp_path):
    (tmp_path / "annotations.csv").write_text("image,label,mask\ngone.png,benign,m.png\n")
    with pytest.raises(ValueError, match=r"no usable images \(csv format\)"):
        load_dataset(DatasetSpec(tmp_path, format="csv"), 64)


def test_cross_validation_folds_keep_the_dataset_class(csv_root, inbreast_root, tmp_path):
    write_coco(inbreast_truth(inbreast_root), tmp_path, kind="png16")
    coco = load_dataset(DatasetSpec(tmp_path, format="coco", bits_stored=14), 64)
    names = [coco.image_info[i]["file_name"] for i in (1, 4)]
    fold = _subset(coco, names)
    assert isinstance(fold, CocoDataset) and fold.image_size == 64
    for new, old in enumerate((1, 4)):
        np.testing.assert_array_equal(fold.load_image(new), coco.load_image(old))
        np.testing.assert_array_equal(fold.load_original_mask(new)[0],
                                      coco.load_original_mask(old)[0])


# ------------------------------------------------------------------------- the README
def readme_commands() -> list[list[str]]:
    """The `inbreast` commands of the README's "Your own mammograms" bash block."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Your own mammograms\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("inbreast ")]


def test_the_readme_python_example_loads_the_dataset(csv_root, capsys):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Your own mammograms\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(code.replace('"my_mammograms"', repr(str(csv_root))), namespace)  # noqa: S102
    summary = namespace["dataset"].summary()
    assert (summary["images"], summary["patients"]) == (20, 5)
    assert summary["masses"] == summary["benign_masses"] + summary["malignant_masses"] > 0
    assert str(summary) in capsys.readouterr().out


@pytest.mark.slow
def test_the_readme_walkthrough_trains_and_evaluates_and_scores_as_inbreast(
        csv_root, inbreast_root, tmp_path, caplog):
    """Its train and evaluate commands, on the CSV dataset (the README's folder, run, and
    output names swapped for temporary ones, the tiny CPU options added); the evaluation is
    then the same as that of the same images read in the INbreast layout."""
    train, evaluate = readme_commands()
    assert train[0] == "train" and evaluate[0] == "evaluate"
    assert train[train.index("--columns") + 1] == CSV_COLUMNS
    logs, out = tmp_path / "runs", tmp_path / "evaluation"
    places = {"my_mammograms": str(csv_root), "runs": str(logs), "evaluation": str(out)}

    def run(argv, *extra):
        return main(["-q", *(places.get(a, a) for a in argv), *TINY, *extra])

    assert run(train, "--steps", "1", "--epochs", "1", "--nondeterministic") == 0
    assert sorted(p.name for p in (logs / "fold0of5").glob("*/*.h5")) == [
        "mask_rcnn_ftmtl_paper_cpu_0001.h5"]
    assert run(evaluate) == 0
    ours = json.loads((out / "metrics.json").read_text())
    assert ours["n_cases"] == 4  # one patient of five: four views
    # The same images and masses in the INbreast layout: the same folds, the same scores.
    as_inbreast = [a for a in evaluate if a not in ("--bits-stored", "14", "--columns",
                                                    CSV_COLUMNS, "--dataset-format", "csv")]
    assert "--columns" not in as_inbreast and len(as_inbreast) == len(evaluate) - 6
    places["my_mammograms"], places["evaluation"] = str(inbreast_root), str(tmp_path / "ib")
    assert run(as_inbreast) == 0
    theirs = json.loads((tmp_path / "ib" / "metrics.json").read_text())
    assert ours == theirs
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
