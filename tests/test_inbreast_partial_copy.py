"""INbreast as a new user meets it: a partial copy (the CSV complete, a few DICOMs) gives one
warning, and summary() tells BI-RADS 1 images from mass-free ones and says which ROI kinds
were left out and how to take them in."""

from __future__ import annotations

import logging
import plistlib
import shutil

import pytest

from ftmtl.datasets.loader import DatasetSpec, load_dataset
from ftmtl.datasets.reporting import summary_line
from ftmtl.inbreast import MASS_NAMES, MASS_NAMES_SPICULATED, INbreastDataset
from ftmtl.inbreast.metadata import read_inbreast_csv

SPICULATED = [[20.0, 30.0], [34.0, 28.0], [40.0, 44.0], [24.0, 46.0]]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    root = tmp_path_factory.mktemp("inbreast")
    manifest = generate_synthetic_inbreast(root, n_patients=3, seed=2, image_shape=(128, 96))
    return root, manifest


def load(root, **kwargs):
    dataset = INbreastDataset()
    dataset.load_inbreast(root, **kwargs)
    dataset.prepare()
    return dataset


def test_a_partial_copy_gives_one_warning_and_lists_the_rest_at_debug(synthetic, tmp_path,
                                                                       caplog):
    source, _ = synthetic
    root = tmp_path / "partial"
    shutil.copytree(source, root)
    rows = read_inbreast_csv(root / "INbreast.csv")
    dicoms = sorted((root / "AllDICOMs").iterdir())
    kept = dicoms[:2]
    for path in dicoms[2:]:
        path.unlink()
    with caplog.at_level(logging.DEBUG, logger="ftmtl.inbreast.dataset"):
        dataset = load(root)
    assert len(dataset.image_ids) == 2
    ours = [r for r in caplog.records if r.name == "ftmtl.inbreast.dataset"]
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    kept_names = {path.name.split("_")[0] for path in kept}
    missing = [r for r in rows if r.file_name not in kept_names]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{len(missing)} of {len(rows)} rows of INbreast.csv have no "
                                  "DICOM in AllDICOMs (a partial copy?); skipped: ")
    first = ", ".join(r.file_name for r in missing[:5])
    assert f"{first} and {len(missing) - 5} more" in warnings[0]
    assert "DEBUG" in warnings[0] and "-v" in warnings[0]
    debug = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    assert debug == [f"INbreast.csv row {r.row}: no DICOM for File Name {r.file_name} in "
                     "AllDICOMs; skipped" for r in missing]


def _edit_rois(path, edit):
    document = plistlib.loads(path.read_bytes())
    rois = document["Images"][0]["ROIs"]
    rois[:] = edit(rois)
    document["Images"][0]["NumberOfROIs"] = len(rois)
    path.write_bytes(plistlib.dumps(document, fmt=plistlib.FMT_XML))


@pytest.fixture(scope="module")
def edited(synthetic, tmp_path_factory):
    """The synthetic copy with a Spiculated Region added to one mass image, and the masses of
    one benign image removed (its calcifications stay): BI-RADS 2 or 3, but mass-free."""
    source, manifest = synthetic
    root = tmp_path_factory.mktemp("edited")
    shutil.copytree(source, root, dirs_exist_ok=True)
    with_mass = [i for i in manifest.images if i.masses]
    spiculated = with_mass[0]
    emptied = next(i for i in with_mass[1:] if i.label == "benign")

    def add_spiculated(rois):
        return [*rois, {"Name": "Spiculated Region", "IndexInImage": len(rois),
                        "NumberOfPoints": 4, "Type": 15,
                        "Point_px": [f"({x:f}, {y:f})" for x, y in SPICULATED]}]

    _edit_rois(root / "AllXML" / f"{spiculated.file_name}.xml", add_spiculated)
    _edit_rois(root / "AllXML" / f"{emptied.file_name}.xml",
               lambda rois: [r for r in rois if r.get("Name") != "Mass"])
    return root, manifest, spiculated, emptied


def test_summary_tells_birads_1_from_mass_free_and_names_the_rois_left_out(edited):
    root, manifest, spiculated, emptied = edited
    summary = load(root).summary()
    counts = manifest.counts()
    assert summary["normal_birads1"] == counts["normal"]
    assert summary["mass_free"] == counts["normal"] + 1  # the emptied benign image
    assert summary["masses"] == counts["masses"] - len(emptied.masses)
    assert summary["excluded_rois"]["Spiculated Region"] == 1
    assert summary["excluded_rois"].get("Calcification", 0) == counts["calcifications"]
    hint = summary["include_excluded"]
    assert "only ROIs named Mass are masses" in hint
    assert "MASS_NAMES + MASS_NAMES_SPICULATED" in hint
    assert '--mass-rois "Mass,Spiculated Region,Espiculated Region,Spiculated region"' in hint


def test_spiculated_regions_count_as_masses_when_named(edited):
    root, manifest, spiculated, emptied = edited
    default = load(root).summary()
    both = load(root, mass_names=MASS_NAMES + MASS_NAMES_SPICULATED)
    assert both.summary()["masses"] == default["masses"] + 1
    assert "Spiculated Region" not in both.summary()["excluded_rois"]
    info = next(i for i in both.image_info if i["file_name"] == spiculated.file_name)
    assert [roi.name for roi in info["masses"]][-1] == "Spiculated Region"
    # The same through the one way in the command line uses (--mass-rois).
    spec = DatasetSpec(root, mass_names=("Mass", "Spiculated Region"))
    assert load_dataset(spec, None).summary()["masses"] == default["masses"] + 1


def test_the_log_line_of_a_summary_gives_the_counts_without_the_hint():
    summary = {"samples": 50, "images": 48, "patients": 12, "masses": 44, "benign_masses": 20,
               "malignant_masses": 24, "mass_free": 12, "include_excluded": "long hint"}
    assert summary_line(summary) == ("48 images of 12 patients, 44 masses (20 benign, "
                                     "24 malignant), 12 mass-free")
