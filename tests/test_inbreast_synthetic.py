"""Synthetic INbreast: file layout, determinism, masks, counts, texture and difficulty."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from lxml import etree
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from ftmtl.inbreast import phantom
from ftmtl.inbreast.synthetic import (
    REAL_SHAPES,
    SyntheticManifest,
    generate_synthetic_inbreast,
    read_manifest,
)

SHAPE = (256, 192)
HEADER = b"Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
ROI_KEYS = ["Area", "Center", "Dev", "IndexInImage", "Max", "Mean", "Min", "Name",
            "NumberOfPoints", "Point_mm", "Point_px", "Total", "Type"]
POINT_PX = re.compile(r"^\((-?\d+\.\d{6}), (-?\d+\.\d{6})\)$")
DICOM_NAME = re.compile(r"^(\d{8})_([0-9a-f]{16})_MG_([LR])_(CC|ML)_ANON\.dcm$")
BENIGN, MALIGNANT = {"2", "3"}, {"4a", "4b", "4c", "5", "6"}


# ---------------------------------------------------------------------------- helpers (readers
# written here, independent of the library's own readers)
def plist_value(node: etree._Element):
    """Turn one plist element into Python values (dict keys keep their file order)."""
    if node.tag == "dict":
        children = list(node)
        return {k.text: plist_value(v) for k, v in zip(children[::2], children[1::2], strict=True)}
    if node.tag == "array":
        return [plist_value(child) for child in node]
    if node.tag == "integer":
        return int(node.text)
    if node.tag == "real":
        return float(node.text)
    return node.text


def read_plist(path: Path) -> dict:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.parse(str(path), parser).getroot()
    assert root.tag == "plist" and root.get("version") == "1.0"
    return plist_value(root[0])


def image_rois(path: Path) -> tuple[dict, list[dict]]:
    document = read_plist(path)
    (image,) = document["Images"]
    return image, image["ROIs"]


def parse_points(strings: list[str]) -> np.ndarray:
    points = []
    for text in strings:
        match = POINT_PX.match(text)
        assert match, f"Point_px {text!r} is not printf '(%f, %f)'"
        points.append((float(match.group(1)), float(match.group(2))))
    return np.asarray(points).reshape(-1, 2)


def read_csv_rows(root: Path) -> list[list[str]]:
    text = (root / "INbreast.csv").read_bytes().decode("ascii")
    return [line.split(";") for line in text.split("\r\n")[1:-1]]


def fill(polygon_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = draw_polygon(polygon_xy[:, 1], polygon_xy[:, 0], shape=shape)
    mask[rr, cc] = True
    return mask


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def mass_contrast(root: Path, manifest: SyntheticManifest) -> float:
    """Mean (inside - ring) / std(ring) over all masses, from the written DICOMs."""
    values = []
    for image in manifest.images:
        pixels = pydicom.dcmread(root / "AllDICOMs" / image.dicom_name).pixel_array.astype(float)
        for mass in image.masses:
            mask = mass.mask
            ring = ndimage.binary_dilation(mask, iterations=6) & ~mask & (pixels > 500)
            values.append((pixels[mask].mean() - pixels[ring].mean()) / pixels[ring].std())
    return float(np.mean(values))


def spectrum_slope(patch: np.ndarray, fmin: float, fmax: float) -> float:
    """Slope of the radially averaged power spectrum in log-log, over [fmin, fmax] cycles/px."""
    patch = patch - patch.mean()
    window = np.hanning(patch.shape[0])[:, None] * np.hanning(patch.shape[1])[None, :]
    power = np.abs(np.fft.fft2(patch * window)) ** 2
    freq = np.hypot(np.fft.fftfreq(patch.shape[0])[:, None], np.fft.fftfreq(patch.shape[1]))
    edges = np.geomspace(fmin, fmax, 10)
    which = np.digitize(freq.ravel(), edges)
    f_mean = [freq.ravel()[which == b].mean() for b in range(1, len(edges))]
    p_mean = [power.ravel()[which == b].mean() for b in range(1, len(edges))]
    return float(np.polyfit(np.log(f_mean), np.log(p_mean), 1)[0])


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, SyntheticManifest]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate_synthetic_inbreast(root, n_patients=3, seed=11, image_shape=SHAPE)


# ---------------------------------------------------------------------------- layout
def test_csv_bytes(dataset):
    root, manifest = dataset
    raw = (root / "INbreast.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert raw.split(b"\r\n")[0] == HEADER
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    rows = read_csv_rows(root)
    assert len(rows) == len(manifest.images) == 12
    for row, image in zip(rows, manifest.images, strict=True):
        assert row[:2] == ["removed", "removed"]
        assert row[2] in ("L", "R") and row[3] in ("CC", "MLO")
        assert re.fullmatch(r"20(0[89]|10)(0[1-9]|1[0-2])", row[4])
        assert row[5] == image.file_name
        assert row[6] in ("1", "2", "3", "4") or (row[6].strip() == "" and len(row[6]) > 0)
        assert row[7] in {"1"} | BENIGN | MALIGNANT


def test_dicom_names_and_patients(dataset):
    root, manifest = dataset
    names = sorted(p.name for p in (root / "AllDICOMs").iterdir())
    assert names == sorted(image.dicom_name for image in manifest.images)
    views_by_patient: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        match = DICOM_NAME.match(name)
        assert match, name
        views_by_patient.setdefault(match.group(2), []).append((match.group(3), match.group(4)))
    assert len({DICOM_NAME.match(n).group(1) for n in names}) == len(names)
    assert len(views_by_patient) == 3
    for views in views_by_patient.values():
        assert sorted(views) == [("L", "CC"), ("L", "ML"), ("R", "CC"), ("R", "ML")]


def test_dicom_headers_and_pixels(dataset):
    root, manifest = dataset
    for image in manifest.images:
        path = root / "AllDICOMs" / image.dicom_name
        raw = path.read_bytes()
        assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        meta = ds.file_meta
        assert meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"
        assert meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPInstanceUID == meta.MediaStorageSOPInstanceUID
        assert (ds.Rows, ds.Columns) == SHAPE
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 14, 13)
        assert ds.PixelRepresentation == 0 and ds.SamplesPerPixel == 1
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.Modality == "MG"
        assert "PixelSpacing" not in ds and "ImagerPixelSpacing" not in ds
        assert ds.PatientID in ("", "removed")
        assert ds.ImageLaterality == image.laterality and ds.ViewPosition == image.view
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint16 and pixels.shape == SHAPE
        assert pixels.max() < 2**14
        # Background near 0, breast bright: the chest-wall side is breast, the far corner is not.
        wall, far = (0, -1) if image.laterality == "L" else (-1, 0)
        assert pixels[SHAPE[0] // 2, wall] > 800  # fat is about 950 (phantom.FAT_LEVEL)
        assert pixels[-1, far] < 300


def test_xml_structure(dataset):
    root, manifest = dataset
    xml_names = sorted(p.name for p in (root / "AllXML").iterdir())
    assert xml_names == sorted(i.xml_name for i in manifest.images if i.label != "normal")
    for image in manifest.images:
        if image.xml_name is None:
            continue
        text = (root / "AllXML" / image.xml_name).read_text(encoding="utf-8")
        assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC '
                               '"-//Apple//DTD PLIST 1.0//EN" '
                               '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n')
        assert "<!ENTITY" not in text and "\t<key>Images</key>" in text
        header, rois = image_rois(root / "AllXML" / image.xml_name)
        assert list(header) == ["ImageIndex", "NumberOfROIs", "ROIs"]
        assert header["ImageIndex"] == 0
        for roi in rois:
            if "Name" not in roi:
                assert "roi_without_name" in image.faults
                assert list(roi) == [k for k in ROI_KEYS if k != "Name"]
                continue
            assert list(roi) == ROI_KEYS
            points = parse_points(roi["Point_px"])
            assert len(roi["Point_mm"]) == len(points)
            assert roi["Type"] == (19 if len(points) == 1 else 15)
            assert roi["Min"] <= roi["Mean"] <= roi["Max"] < 2**14
            if roi["Name"] == "Mass":
                assert len(points) >= 3 and roi["Area"] > 0 and roi["Dev"] > 0
                assert not np.array_equal(points[0], points[-1])  # polygon not closed


def test_faults_are_in_the_files(dataset):
    root, manifest = dataset
    found = set()
    for image in manifest.images:
        rows = {row[5]: row for row in read_csv_rows(root)}
        if rows[image.file_name][6].strip() == "":
            found.add("blank_acr")
            assert "blank_acr" in image.faults
        if image.xml_name is None:
            continue
        header, rois = image_rois(root / "AllXML" / image.xml_name)
        if header["NumberOfROIs"] != len(rois):
            found.add("number_of_rois_mismatch")
        for roi in rois:
            name = roi.get("Name")
            n_points = len(roi["Point_px"])
            if roi["NumberOfPoints"] != n_points:
                found.add("number_of_points_mismatch")
            if name is None:
                found.add("roi_without_name")
            if name == "Point 1" and n_points == 1:
                found.add("point_roi_named_point")
            if name == "Unnamed" and n_points == 2:
                found.add("two_point_roi_unnamed")
            points = parse_points(roi["Point_px"])
            if name == "Mass" and ((points < 0).any() or (points[:, 0] > SHAPE[1] - 1).any()):
                found.add("point_outside_image")
        faults_here = set(image.faults) - {"blank_acr"}
        assert faults_here <= found
    recorded = {fault for faults in manifest.faults.values() for fault in faults}
    assert found == recorded == {
        "blank_acr", "number_of_rois_mismatch", "number_of_points_mismatch", "roi_without_name",
        "point_roi_named_point", "two_point_roi_unnamed", "point_outside_image"}


def test_no_faults_when_disabled(tmp_path):
    manifest = generate_synthetic_inbreast(tmp_path, n_patients=2, seed=3, image_shape=SHAPE,
                                           faults=False)
    assert not manifest.faults
    assert all(row[6] in ("1", "2", "3", "4") for row in read_csv_rows(tmp_path))
    for image in manifest.images:
        if image.xml_name is None:
            continue
        header, rois = image_rois(tmp_path / "AllXML" / image.xml_name)
        assert header["NumberOfROIs"] == len(rois)
        for roi in rois:
            assert list(roi) == ROI_KEYS and roi["Name"] in ("Mass", "Calcification")
            points = parse_points(roi["Point_px"])
            assert roi["NumberOfPoints"] == len(points)
            assert (points >= 0).all() and (points[:, 0] <= SHAPE[1] - 1).all()
            assert (points[:, 1] <= SHAPE[0] - 1).all()


# ---------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    root, _ = dataset
    again = generate_synthetic_inbreast(tmp_path / "again", n_patients=3, seed=11,
                                        image_shape=SHAPE)
    first, second = all_files(root), all_files(again.out_dir)
    assert list(first) == list(second)
    for name in first:
        assert first[name] == second[name], name
    other = all_files(generate_synthetic_inbreast(tmp_path / "other", n_patients=3, seed=12,
                                                  image_shape=SHAPE).out_dir)
    assert other["INbreast.csv"] != first["INbreast.csv"]
    assert not set(first.values()) & set(other.values())


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    generate_synthetic_inbreast(tmp_path, n_patients=1, seed=0, image_shape=(96, 72))
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_synthetic_inbreast(tmp_path, n_patients=1, seed=1, image_shape=(96, 72))
    manifest = generate_synthetic_inbreast(tmp_path, n_patients=1, seed=1, image_shape=(96, 72),
                                           overwrite=True)
    names = sorted(p.name for p in (tmp_path / "AllDICOMs").iterdir())
    assert names == sorted(image.dicom_name for image in manifest.images)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_patients": 0}, "n_patients"), ({"difficulty": 1.5}, "difficulty"),
    ({"normal_fraction": -0.1}, "normal_fraction"), ({"image_shape": (32, 32)}, "image_shape"),
])
def test_bad_arguments_name_the_field(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        generate_synthetic_inbreast(tmp_path, **kwargs)


# ---------------------------------------------------------------------------- masks and masses
def test_masks_are_the_written_polygons(dataset):
    root, manifest = dataset
    for image in manifest.images:
        if image.xml_name is None:
            assert not image.masses
            continue
        _, rois = image_rois(root / "AllXML" / image.xml_name)
        polygons = [parse_points(r["Point_px"]) for r in rois if r.get("Name") == "Mass"]
        assert len(polygons) == len(image.masses)
        for polygon, mass in zip(polygons, image.masses, strict=True):
            np.testing.assert_array_equal(polygon, mass.polygon_xy)
            mask = mass.mask
            assert mask.shape == SHAPE and mask.dtype == bool
            np.testing.assert_array_equal(mask, fill(polygon, SHAPE))


def test_masses_inside_breast_and_5_to_30_mm(dataset):
    root, manifest = dataset
    spacing = manifest.pixel_spacing_mm
    assert spacing == pytest.approx(230.0 / SHAPE[0])
    for image in manifest.images:
        pixels = pydicom.dcmread(root / "AllDICOMs" / image.dicom_name).pixel_array
        breast = ndimage.binary_fill_holes(pixels > 400)
        for mass in image.masses:
            assert mass.mask.any() and not (mass.mask & ~breast).any(), image.file_name
            xy = mass.polygon_xy * spacing
            area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], -1))
                             - np.dot(xy[:, 1], np.roll(xy[:, 0], -1)))
            extent = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)).max()
            assert 2 * np.sqrt(area / np.pi) >= 5.0 - 1e-6
            assert extent <= 30.0 + 1e-6


def test_views_of_a_breast_share_masses_and_labels(dataset):
    _, manifest = dataset
    breasts: dict[tuple[str, str], list] = {}
    for image in manifest.images:
        breasts.setdefault((image.patient_hash, image.laterality), []).append(image)
    two_masses = 0
    for cc, mlo in breasts.values():
        assert (cc.view, mlo.view) == ("CC", "MLO")
        assert cc.label == mlo.label and cc.birads == mlo.birads
        assert len(cc.masses) == len(mlo.masses)
        assert all(m.label == cc.label for m in cc.masses + mlo.masses)
        for a, b in zip(cc.masses, mlo.masses, strict=True):
            assert a.kind == b.kind and not np.array_equal(a.mask, b.mask)
        two_masses += len(cc.masses) == 2
    assert two_masses >= 1


def test_counts_match_csv_and_xml(dataset):
    root, manifest = dataset
    counts = manifest.counts()
    birads = [row[7] for row in read_csv_rows(root)]
    assert counts["images"] == len(birads)
    assert counts["normal"] == birads.count("1")
    assert counts["benign"] == sum(b in BENIGN for b in birads)
    assert counts["malignant"] == sum(b in MALIGNANT for b in birads)
    assert counts["patients"] == 3
    assert counts["normal"] > 0 and counts["benign"] > 0 and counts["malignant"] > 0
    masses = calcs = 0
    for path in sorted((root / "AllXML").iterdir()):
        _, rois = image_rois(path)
        masses += sum(r.get("Name") == "Mass" for r in rois)
        calcs += sum(r.get("Name") == "Calcification" for r in rois)
    assert counts["xml_files"] == len(list((root / "AllXML").iterdir()))
    assert counts["masses"] == masses == counts["benign_masses"] + counts["malignant_masses"]
    assert counts["calcifications"] == calcs


def test_manifest_json_round_trip(dataset):
    root, manifest = dataset
    text = (root / "manifest.json").read_text(encoding="utf-8")
    assert str(root) not in text and "mask" not in text
    assert json.loads(text)["counts"] == manifest.counts()
    loaded = read_manifest(root)
    assert loaded.counts() == manifest.counts()
    for a, b in zip(loaded.images, manifest.images, strict=True):
        assert (a.file_name, a.label, a.birads, a.faults) == (b.file_name, b.label, b.birads,
                                                              b.faults)
        for ma, mb in zip(a.masses, b.masses, strict=True):
            np.testing.assert_array_equal(ma.polygon_xy, mb.polygon_xy)
            np.testing.assert_array_equal(ma.mask, mb.mask)


# ---------------------------------------------------------------------------- image statistics
@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_power_law_noise_has_the_requested_slope(beta):
    rng = np.random.default_rng(5)
    slopes = [spectrum_slope(phantom.power_law_noise((128, 128), beta, rng), 0.02, 0.25)
              for _ in range(4)]
    assert np.mean(slopes) == pytest.approx(-beta, abs=0.3)


def test_breast_texture_spectrum_is_power_law(dataset):
    root, manifest = dataset
    slopes = []
    for image in manifest.images:
        if image.label != "normal" or image.view != "CC":
            continue
        pixels = pydicom.dcmread(root / "AllDICOMs" / image.dicom_name).pixel_array
        rows = SHAPE[0] // 2 + np.arange(-32, 32)
        cols = np.arange(4, 68) if image.laterality == "L" else SHAPE[1] - 5 - np.arange(64)[::-1]
        patch = pixels[np.ix_(rows, cols)].astype(float)
        assert (patch > 800).all()  # inside the breast
        slopes.append(spectrum_slope(patch, 0.03, 0.2))
    assert slopes
    assert -4.0 < np.mean(slopes) < -2.0


def test_difficulty_lowers_mass_contrast(tmp_path):
    kwargs = {"n_patients": 2, "seed": 4, "image_shape": SHAPE, "normal_fraction": 0.0}
    easy = generate_synthetic_inbreast(tmp_path / "easy", difficulty=0.1, **kwargs)
    hard = generate_synthetic_inbreast(tmp_path / "hard", difficulty=0.9, **kwargs)
    easy_contrast = mass_contrast(easy.out_dir, easy)
    hard_contrast = mass_contrast(hard.out_dir, hard)
    assert easy_contrast > 1.0
    assert hard_contrast < easy_contrast


def test_difficulty_blurs_the_shape_difference():
    """Compactness (4 pi A / P^2) separates benign from malignant less when it is harder."""

    def separation(difficulty: float) -> float:
        rng = np.random.default_rng(0)
        values = {}
        for label in ("benign", "malignant"):
            outlines = [phantom.mass_outline(phantom.sample_mass_shape(label, difficulty, rng),
                                             0.5, rng.uniform(0, 2 * np.pi)) for _ in range(150)]
            values[label] = np.array([compactness(xy) for xy in outlines])
        # Probability that a random benign mass is more compact than a random malignant one.
        return float((values["benign"][:, None] > values["malignant"][None, :]).mean())

    def compactness(xy: np.ndarray) -> float:
        area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], -1))
                         - np.dot(xy[:, 1], np.roll(xy[:, 0], -1)))
        perimeter = np.linalg.norm(xy - np.roll(xy, -1, axis=0), axis=1).sum()
        return 4 * np.pi * area / perimeter**2

    easy, default, hard = separation(0.1), separation(0.5), separation(0.9)
    assert easy > default > hard
    assert hard > 0.55 and default < 0.97  # neither hopeless nor trivial


def test_real_shapes_constant():
    assert REAL_SHAPES == ((3328, 2560), (4084, 3328))


# ---------------------------------------------------------------------------- with the reader
def test_round_trip_through_inbreast_dataset(dataset):
    """The library's reader recovers every mask (full resolution), label and patient."""
    from ftmtl.inbreast.dataset import INbreastDataset

    root, manifest = dataset
    reader = INbreastDataset()
    reader.load_inbreast(root, image_size=None)
    reader.prepare()
    by_name = {image.file_name: image for image in manifest.images}
    assert sorted(info["file_name"] for info in reader.image_info) == sorted(by_name)
    for image_id in reader.image_ids:
        info = reader.image_info[image_id]
        truth = by_name[info["file_name"]]
        assert info["patient_id"] == truth.patient_hash
        assert (info["label"], info["birads"]) == (truth.label, truth.birads)
        masks, class_ids = reader.load_mask(image_id)
        full = reader.load_transform(image_id).mask_to_original(masks)
        assert full.shape == SHAPE + (len(truth.masses),)
        for k, mass in enumerate(truth.masses):
            expected = mass.mask
            dice = 2 * (full[..., k] & expected).sum() / (full[..., k].sum() + expected.sum())
            assert dice >= 0.99, (truth.file_name, k, dice)
            assert reader.class_names[class_ids[k]] == mass.label
    counts, summary = manifest.counts(), reader.summary()
    assert summary["images"] == counts["images"] and summary["patients"] == counts["patients"]
    assert summary["masses"] == counts["masses"]
    assert summary["benign_masses"] == counts["benign_masses"]
    assert summary["malignant_masses"] == counts["malignant_masses"]
    assert summary["normal_birads1"] == counts["normal"]
    assert summary["mass_free"] == counts["normal"]  # every benign/malignant image has a mass
    assert summary["excluded_rois"]["Calcification"] == counts["calcifications"]


# ------------------------------------------------------------------------------ intensities
# Targets from real INbreast files (their ROI statistics): tissue mostly between about 1,000 and
# 3,000, mass regions averaging about 1,300-2,100, maxima about 2,900 or less.
TISSUE_RANGE = (800, 3000)  # 10th and 99th percentiles of the breast (the skin ramp is lower)
MASS_MEAN_RANGE = (1300, 2100)  # the median over masses of each mass region's mean
MASS_MAX_LIMIT = 3000


def test_intensities_are_those_of_real_inbreast_files(tmp_path):
    manifest = generate_synthetic_inbreast(tmp_path, n_patients=6, seed=21, image_shape=SHAPE)
    tissue, mass_means, mass_maxima = [], [], []
    for image in manifest.images:
        pixels = pydicom.dcmread(tmp_path / "AllDICOMs" / image.dicom_name).pixel_array
        breast = pixels > 300  # the background is 40
        tissue.append(np.percentile(pixels[breast], [10, 99]))
        for mass in image.masses:
            mass_means.append(pixels[mass.mask].mean())
            mass_maxima.append(pixels[mass.mask].max())
    tissue = np.array(tissue)
    assert tissue[:, 0].min() >= TISSUE_RANGE[0] and tissue[:, 1].max() <= TISSUE_RANGE[1]
    assert MASS_MEAN_RANGE[0] <= np.median(mass_means) <= MASS_MEAN_RANGE[1]
    assert max(mass_maxima) <= MASS_MAX_LIMIT


def test_intensity_scale_is_a_gain_on_the_same_images(tmp_path):
    one = generate_synthetic_inbreast(tmp_path / "one", n_patients=1, seed=3, image_shape=SHAPE)
    two = generate_synthetic_inbreast(tmp_path / "two", n_patients=1, seed=3, image_shape=SHAPE,
                                      intensity_scale=2.0)
    assert two.intensity_scale == 2.0 and read_manifest(tmp_path / "two").intensity_scale == 2.0
    for a, b in zip(one.images, two.images, strict=True):
        assert a.dicom_name == b.dicom_name
        x = pydicom.dcmread(tmp_path / "one" / "AllDICOMs" / a.dicom_name).pixel_array
        y = pydicom.dcmread(tmp_path / "two" / "AllDICOMs" / b.dicom_name).pixel_array
        # rounding happens once, after the gain: within one stored value of twice the image
        assert np.abs(y.astype(int) - 2 * x.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="intensity_scale must be in"):
        generate_synthetic_inbreast(tmp_path / "bad", n_patients=1, intensity_scale=6.0)


def test_the_default_window_prepares_any_gain_alike(tmp_path):
    from ftmtl.inbreast.dataset import INbreastDataset

    prepared = {}
    for gain in (0.5, 1.0, 2.0):
        root = tmp_path / f"g{gain:g}"
        generate_synthetic_inbreast(root, n_patients=1, seed=5, image_shape=SHAPE,
                                    intensity_scale=gain)
        for window in ("percentile", "full_range"):
            dataset = INbreastDataset()
            dataset.load_inbreast(root, image_size=96, window=window)
            dataset.prepare()
            prepared[gain, window] = np.concatenate([dataset.load_image(i)[..., 0].ravel()
                                                     for i in dataset.image_ids]) / 255.0
    for gain in (0.5, 2.0):
        # percentile: the same picture up to the rounding of the stored values
        change = np.abs(prepared[gain, "percentile"] - prepared[1.0, "percentile"])
        assert change.mean() < 0.005 and change.max() < 0.05
        # the division by 2**14 - 1 passes the gain on to the network
        ratio = prepared[gain, "full_range"].mean() / prepared[1.0, "full_range"].mean()
        assert ratio == pytest.approx(gain, rel=0.02)
