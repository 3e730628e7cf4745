"""Reader for the INbreast ROI files: OsiriX exports as Apple plist XML (untrusted input).

The XML is parsed with entity resolution, DTD loading and network access off, and a document
that declares any entity is refused, so external entities and "billion laughs" payloads can
neither read local files nor exhaust memory. Files above a size bound are refused unread, and
parsing stops once the element count passes a bound, so a file of many tiny elements cannot
exhaust memory either. The plist nesting depth and the length of a point string are bounded
too. The limits leave wide room for the real files: their plist nests 7 deep, a point string
is about 25 characters, and 16 MiB or 200,000 elements hold some 100,000 points.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from lxml import etree

from ftmtl.inbreast.records import InbreastFormatError, RoiRecord

logger = logging.getLogger(__name__)

MAX_XML_BYTES = 16 * 1024 * 1024
MAX_XML_ELEMENTS = 200_000
MAX_PLIST_DEPTH = 32
MAX_POINT_CHARS = 256
MAX_ABS_COORDINATE = 1e6
_FEED_BYTES = 1 << 16
KNOWN_ROI_NAMES = frozenset({
    "Mass", "Calcification", "Calcifications", "Cluster", "Spiculated Region",
    "Espiculated Region", "Spiculated region", "Distortion", "Asymmetry", "Assymetry",
    "Unnamed", "Point 1", "Point 3",
})
_STAT_KEYS = ("Area", "Dev", "Max", "Mean", "Min", "Total")
# Each alternative matches digits one way only, so a failed match cannot backtrack for long.
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_POINT = re.compile(rf"\(\s*({_NUMBER})((?:\s*,\s*{_NUMBER})*)\s*\)", re.ASCII)
_PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "dtd_validation": False,
    "remove_comments": True,
    "remove_pis": True,
}


def parse_point(text: str, context: str = "") -> tuple[float, ...]:
    """Parse an OsiriX point string such as ``"(207.938004, 1937.719971)"`` or ``"(x, y, z)"``.

    Strict: anything but a parenthesised list of finite numbers, including a non-string or a
    string over MAX_POINT_CHARS characters, raises InbreastFormatError (``context`` says where
    the string came from). No other exception escapes.
    """
    where = f"{context}: " if context else ""
    if not isinstance(text, str):
        raise InbreastFormatError(f"{where}point {_shorten(text)} is not a string")
    if len(text) > MAX_POINT_CHARS:
        raise InbreastFormatError(
            f"{where}point {_shorten(text)} has {len(text)} characters, above {MAX_POINT_CHARS}"
        )
    match = _POINT.fullmatch(text.strip())
    if match is None:
        raise InbreastFormatError(f"{where}point {text!r} is not of the form '(x, y[, z])'")
    values = (float(match.group(1)),) + tuple(
        float(part) for part in match.group(2).split(",")[1:]
    )
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        raise InbreastFormatError(f"{where}point {text!r} needs at least 2 finite coordinates")
    return values


def _tag(node: etree._Element, limit: int = 60) -> str:
    tag = str(node.tag)
    return tag if len(tag) <= limit else f"{tag[:limit]}..."


def _shorten(value: Any, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters, so a hostile value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def read_rois(
    path: str | os.PathLike,
    max_bytes: int = MAX_XML_BYTES,
    max_elements: int = MAX_XML_ELEMENTS,
) -> list[RoiRecord]:
    """Read every ROI of an INbreast XML file.

    Faults seen in the real files are survived with a warning naming the file and ROI: point
    counts that disagree with the points, ROI counts that disagree with the ROIs, missing or
    unknown names, counts or indices of the wrong type (ignored), an unreadable Center or
    Point_mm (dropped), and unreadable or absurd Point_px (that ROI is skipped). A file whose
    structure is not the OsiriX plist raises InbreastFormatError; no other exception escapes.
    """
    path = Path(path)
    document = read_plist(path, max_bytes, max_elements)
    if not isinstance(document, dict) or not isinstance(document.get("Images"), list):
        raise InbreastFormatError(f"{path}: the top-level dict has no 'Images' array")
    rois: list[RoiRecord] = []
    for position, image in enumerate(document["Images"]):
        if not isinstance(image, dict):
            raise InbreastFormatError(f"{path}: Images[{position}] is not a dict")
        rois.extend(_read_image_rois(path, position, image))
    return rois


def read_plist(
    path: str | os.PathLike,
    max_bytes: int = MAX_XML_BYTES,
    max_elements: int = MAX_XML_ELEMENTS,
) -> Any:
    """Read an XML plist into Python values (dict, list, str, int, float, bool).

    Any problem, hostile input included, raises InbreastFormatError naming the file.
    """
    path = Path(path)
    root = _parse_untrusted_xml(path, max_bytes, max_elements)
    if root.tag != "plist":
        raise InbreastFormatError(
            f"{path}: root element is <{_tag(root)}>, expected <plist>"
        )
    children = _elements(path, root)
    if len(children) != 1:
        raise InbreastFormatError(f"{path}: <plist> holds {len(children)} values, expected 1")
    return _plist_value(path, children[0], depth=1)


def _parse_untrusted_xml(path: Path, max_bytes: int, max_elements: int) -> etree._Element:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InbreastFormatError(f"{path}: {size} bytes, above the limit of {max_bytes}")
        data = path.read_bytes()
    except OSError as err:
        raise InbreastFormatError(f"{path}: cannot read ({err})") from err
    if b"<!ENTITY" in data:
        raise InbreastFormatError(f"{path}: the document declares entities; refused")
    parser = etree.XMLPullParser(events=("start",), **_PARSER_OPTIONS)
    elements = 0
    try:
        for offset in range(0, len(data), _FEED_BYTES):
            parser.feed(data[offset:offset + _FEED_BYTES])
            elements += sum(1 for _ in parser.read_events())
            if elements > max_elements:
                raise InbreastFormatError(
                    f"{path}: more than {max_elements} XML elements; refused"
                )
        root = parser.close()
    except etree.LxmlError as err:
        raise InbreastFormatError(f"{path}: not well-formed XML ({err})") from err
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise InbreastFormatError(f"{path}: the document declares entities; refused")
    return root


def _elements(path: Path, node: etree._Element) -> list[etree._Element]:
    """Child elements; any entity reference left in the tree is refused."""
    children = []
    for child in node:
        if isinstance(child, etree._Entity):
            raise InbreastFormatError(
                f"{path}: line {child.sourceline}: entity reference {child.text}; refused"
            )
        if isinstance(child.tag, str):
            children.append(child)
    return children


def _plist_value(path: Path, node: etree._Element, depth: int) -> Any:
    tag = node.tag
    if depth > MAX_PLIST_DEPTH:
        raise InbreastFormatError(
            f"{path}: line {node.sourceline}: plist nested deeper than {MAX_PLIST_DEPTH}"
        )
    if tag == "dict":
        return _plist_dict(path, node, depth)
    if tag == "array":
        return [_plist_value(path, child, depth + 1) for child in _elements(path, node)]
    if _elements(path, node):  # also refuses entity references inside scalars
        raise InbreastFormatError(
            f"{path}: line {node.sourceline}: <{_tag(node)}> holds elements, expected a value"
        )
    return _plist_scalar(path, node)


def _plist_scalar(path: Path, node: etree._Element) -> Any:
    tag = node.tag
    try:
        text = (node.text or "").strip()
        if tag == "string":
            return node.text or ""
        if tag == "integer":
            return int(text)
        if tag == "real":
            return float(text)
        if tag in ("true", "false"):
            return tag == "true"
        if tag in ("date", "data"):
            return text
    except ValueError as err:
        if isinstance(err, InbreastFormatError):
            raise
        raise InbreastFormatError(
            f"{path}: line {node.sourceline}: <{tag}> value {_shorten(node.text)} unreadable"
        ) from err
    raise InbreastFormatError(
        f"{path}: line {node.sourceline}: unknown plist element <{_tag(node)}>"
    )


def _plist_dict(path: Path, node: etree._Element, depth: int) -> dict[str, Any]:
    children = _elements(path, node)
    if len(children) % 2:
        raise InbreastFormatError(f"{path}: line {node.sourceline}: <dict> with an unpaired key")
    result: dict[str, Any] = {}
    for key_node, value_node in zip(children[::2], children[1::2], strict=True):
        if key_node.tag != "key":
            raise InbreastFormatError(
                f"{path}: line {key_node.sourceline}: <{_tag(key_node)}> where a <key> "
                "belongs"
            )
        if _elements(path, key_node):
            raise InbreastFormatError(
                f"{path}: line {key_node.sourceline}: <key> holds elements, expected text"
            )
        result[(key_node.text or "").strip()] = _plist_value(path, value_node, depth + 1)
    return result


def _read_image_rois(path: Path, position: int, image: dict[str, Any]) -> list[RoiRecord]:
    image_index = _integer_field(image, "ImageIndex", f"{path}: image #{position}", position)
    entries = image.get("ROIs", [])
    if not isinstance(entries, list):
        raise InbreastFormatError(f"{path}: image {image_index}: 'ROIs' is not an array")
    declared = _integer_field(image, "NumberOfROIs", f"{path}: image {image_index}", None)
    if declared is not None and declared != len(entries):
        logger.warning("%s: image %s: NumberOfROIs is %s but %d ROIs are listed; using the ROIs",
                       path, image_index, declared, len(entries))
    rois = []
    for order, entry in enumerate(entries):
        roi = _read_roi(path, image_index, order, entry)
        if roi is not None:
            rois.append(roi)
    return rois


def _read_roi(path: Path, image_index: int, order: int, entry: Any) -> RoiRecord | None:
    if not isinstance(entry, dict):
        logger.warning("%s: ROI #%d of image %s is not a dict; skipped", path, order, image_index)
        return None
    index = _integer_field(entry, "IndexInImage", f"{path}: ROI #{order}", order)
    name = entry.get("Name")
    if name is not None and not isinstance(name, str):
        name = str(name)
    label = f"{path}: ROI {index} ({_shorten(name)})"
    if name is None:
        logger.warning("%s: ROI %s has no Name; it is not counted as a mass", path, index)
    elif name not in KNOWN_ROI_NAMES:
        logger.warning("%s: unknown Name (not in the INbreast vocabulary)", label)
    try:
        points_px = _points(entry.get("Point_px"), label, "Point_px", dims=2)
        _check_magnitude(points_px, label)
    except InbreastFormatError as err:
        logger.warning("%s; ROI skipped", err)
        return None
    declared = _integer_field(entry, "NumberOfPoints", label, None)
    if declared is not None and declared != len(points_px):
        logger.warning("%s: NumberOfPoints is %s but %d points are listed; using the points",
                       label, declared, len(points_px))
    return RoiRecord(
        name=name,
        type=_integer_field(entry, "Type", label, None),
        index=index,
        points_px=points_px,
        image_index=image_index,
        points_mm=_optional(lambda: _points(entry["Point_mm"], label, "Point_mm", dims=None),
                            entry, "Point_mm"),
        center=_optional(lambda: parse_point(entry["Center"], f"{label} Center"),
                         entry, "Center"),
        declared_points=declared,
        stats=_stats(entry, label),
    )


def _integer_field(record: dict[str, Any], key: str, label: str, default: int | None) -> Any:
    """An <integer> entry; any other type is warned about and replaced by ``default``."""
    value = record.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    logger.warning("%s: %s is %s, not an integer; using %s", label, key, _shorten(value), default)
    return default


def _optional(read: Callable[[], Any], entry: dict[str, Any], key: str) -> Any:
    """A field the masks do not need: when unreadable it is dropped with a warning, not the ROI."""
    if entry.get(key) is None:
        return None
    try:
        return read()
    except InbreastFormatError as err:
        logger.warning("%s; %s dropped, ROI kept", err, key)
        return None


def _stats(entry: dict[str, Any], label: str) -> dict[str, float]:
    stats = {}
    for key in _STAT_KEYS:
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        try:
            number = float(value)
        except OverflowError:  # an <integer> beyond the float range
            number = math.inf
        if math.isfinite(number):
            stats[key] = number
        else:
            logger.warning("%s: %s is %s, not a finite number; dropped", label, key,
                           _shorten(value))
    return stats


def _check_magnitude(points: np.ndarray, label: str) -> None:
    """Coordinates far beyond any image are corruption, and break polygon filling downstream."""
    if points.size and np.abs(points).max() > MAX_ABS_COORDINATE:
        raise InbreastFormatError(
            f"{label}: Point_px has a coordinate of magnitude {np.abs(points).max():.3g}, "
            f"beyond {MAX_ABS_COORDINATE:.0e} pixels"
        )


def _points(values: Any, label: str, key: str, dims: int | None) -> np.ndarray:
    if values is None:
        raise InbreastFormatError(f"{label}: no {key} array")
    if not isinstance(values, list):
        raise InbreastFormatError(f"{label}: {key} is not an array")
    points = [parse_point(value, f"{label} {key}[{i}]") for i, value in enumerate(values)]
    if dims is not None:
        points = [p[:dims] for p in points]
    widths = {len(p) for p in points}
    if len(widths) > 1:
        raise InbreastFormatError(f"{label}: {key} mixes points of {sorted(widths)} coordinates")
    width = widths.pop() if widths else (dims or 2)
    return np.asarray(points, dtype=np.float64).reshape(len(points), width)
