"""What a dataset reader tells its user: one warning for many missing files, and the counts
every dataset's ``summary()`` shares.

A partial copy (the annotations complete, a few images present) must not print a warning per
missing image: one warning says how many, names the first few, and each one is logged at
DEBUG level (the command line's ``-v``) for whoever needs the whole list.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

SHOWN_NAMES = 5


def warn_missing(log: logging.Logger, names: Sequence[str], details: Sequence[str],
                 what: str, total: int) -> None:
    """One warning for ``names`` (``what`` says what they are and lack, e.g. "rows of
    INbreast.csv have no DICOM in AllDICOMs"), and a DEBUG line for each of ``details``."""
    if not names:
        return
    shown = ", ".join(str(name) for name in names[:SHOWN_NAMES])
    more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    log.warning("%d of %d %s; skipped: %s%s (each is listed at DEBUG level, logger %s: -v on "
                "the command line)", len(names), total, what, shown, more, log.name)
    for line in details:
        log.debug("%s", line)


def image_counts(image_info: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Counts over distinct images (``file_name``): samples, images, patients, masses by label
    (``mass_labels`` per mass when present, else the image's ``mass_label``), and mass-free
    images (no mass annotation, whatever else the image shows)."""
    infos = list(image_info)
    images = {info["file_name"]: info for info in infos}.values()
    masses: Counter[str] = Counter()
    for info in images:
        masses.update(info.get("mass_labels") or [info["mass_label"]] * len(info["masses"]))
    return {
        "samples": len(infos),
        "images": len(images),
        "patients": len({info["patient_id"] for info in images}),
        "masses": masses["benign"] + masses["malignant"],
        "benign_masses": masses["benign"],
        "malignant_masses": masses["malignant"],
        "mass_free": sum(1 for info in images if not info["masses"]),
    }


def excluded_counts(image_info: Iterable[dict[str, Any]], key: str) -> dict[str, int]:
    """Sum of the per-image counters ``info[key]`` (name -> annotations left out), by name."""
    total: Counter[str] = Counter()
    seen = set()
    for info in image_info:
        if info["file_name"] not in seen:
            seen.add(info["file_name"])
            total.update(info.get(key) or {})
    return dict(sorted(total.items()))


def summary_line(summary: dict[str, Any]) -> str:
    """A ``summary()`` as one short line for a log: '48 images of 12 patients, 44 masses (20
    benign, 24 malignant), 12 mass-free'; the exclusions and their hint stay in ``summary()``."""
    return (f"{summary['images']} images of {summary['patients']} patients, "
            f"{summary['masses']} masses ({summary['benign_masses']} benign, "
            f"{summary['malignant_masses']} malignant), {summary['mass_free']} mass-free")
