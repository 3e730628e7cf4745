"""The user's category names (a COCO category, a CSV label value) mapped to the network's two
classes, benign and malignant, or left out.

Without a map, a name containing "malignant" is malignant and one containing "benign" is
benign (case-insensitive: "BENIGN_WITHOUT_CALLBACK" is benign, "mass_malignant" malignant). A
map, e.g. ``{"BI-RADS 4": "malignant", "calcification": "ignore"}``, is read first; "ignore"
leaves the annotation out (counted in the dataset's summary). A name neither the map nor the
rule places is an error that names it and says how to map it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ftmtl.datasets.instances import AnnotationFormatError

BENIGN, MALIGNANT, IGNORE = "benign", "malignant", "ignore"
TARGETS = (BENIGN, MALIGNANT, IGNORE)


def parse_pairs(text: str, option: str) -> dict[str, str]:
    """``"a=x,b=y"`` -> {"a": "x", "b": "y"} (spaces around names trimmed); ``option`` names the
    setting in the error."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{option}: {item.strip()!r} is not NAME=VALUE (expected e.g. "
                             f"'a=x,b=y')")
        if name.strip() in pairs:
            raise ValueError(f"{option}: {name.strip()!r} is given twice")
        pairs[name.strip()] = value.strip()
    return pairs


class LabelMap:
    """Names -> "benign", "malignant" or None (left out); see the module doc."""

    def __init__(self, mapping: Mapping[str, str] | str | None = None) -> None:
        if isinstance(mapping, str):
            mapping = parse_pairs(mapping, "label map")
        self.mapping: dict[str, str] = {}
        for name, target in (mapping or {}).items():
            target = str(target).strip().lower()
            if target not in TARGETS:
                raise ValueError(f"label map: {name!r} maps to {target!r}; expected one of "
                                 f"{', '.join(TARGETS)}")
            self.mapping[str(name).strip().casefold()] = target

    def label(self, name: str, where: str) -> str | None:
        """The class of ``name`` ("benign" or "malignant"), or None when it is to be left out;
        ``where`` (the file and field) starts the error of a name that cannot be placed."""
        key = str(name).strip().casefold()
        target = self.mapping.get(key)
        if target is None:
            found = [t for t in (BENIGN, MALIGNANT) if t in key]
            if len(found) != 1:
                raise AnnotationFormatError(
                    f"{where}: label {name!r} is not benign or malignant; map it, e.g. "
                    f"--label-map '{name}=malignant' (or =benign, =ignore to leave it out)")
            target = found[0]
        return None if target == IGNORE else target
