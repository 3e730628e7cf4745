"""The run's configuration as one JSON document, kept inside every checkpoint and beside it.

A checkpoint alone cannot be loaded without knowing the network it belongs to: the layer shapes
follow the config (backbone, layouts, head widths, classes), and the detections follow the image
geometry the weights were trained at. So each checkpoint carries a description of its run:

- inside the ``.h5``, as the root attribute ``run_config`` (a JSON text: no pickle), so a
  checkpoint copied on its own still describes itself; Keras-2 and Matterport readers ignore
  attributes they do not know;
- beside it, as ``run_config.json`` in the run folder, the same document for people and tools.

The document: ``format_version``; ``project_version`` (the ftmtl release that wrote it);
``network`` (the model class, e.g. ``ftmtl.model.FTMTLNet``); ``class_names`` (the training
dataset's, background first, or null); ``config`` (every attribute, ``Config.to_dict()``); and
whatever the config's ``provenance`` holds (``ftmtl.presets.make_config`` records the preset,
the model kind, the overrides and the prepared image size there). ``ftmtl.from_checkpoint``
rebuilds configs and models from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrcnn import project_version

ATTRIBUTE = "run_config"
FILE_NAME = "run_config.json"
FORMAT_VERSION = 1
# Keys every document has; a config's provenance may add others but never replace these.
CORE_KEYS = ("format_version", "project_version", "network", "class_names", "config")


class RunConfigError(ValueError):
    """A checkpoint's run config is unreadable or malformed; the message names the file."""


def describe_run(config, network: str, class_names: list[str] | None = None) -> dict[str, Any]:
    """The document of a run: ``network`` is the model class's qualified name."""
    provenance = dict(getattr(config, "provenance", None) or {})
    return {
        **{k: v for k, v in provenance.items() if k not in CORE_KEYS},
        "format_version": FORMAT_VERSION,
        "project_version": project_version(),
        "network": network,
        "class_names": None if class_names is None else [str(n) for n in class_names],
        "config": config.to_dict(),
    }


def _json_value(value: Any) -> Any:
    """numpy values as plain numbers and lists; anything else JSON has no form for as its text
    (as config.json does), which a rebuild then refuses with the attribute's name."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def to_json(document: dict[str, Any], indent: int | None = None) -> str:
    return json.dumps(document, indent=indent, sort_keys=True, default=_json_value)


def write_attribute(file: h5py.File, document: dict[str, Any]) -> None:
    """Store ``document`` in an open HDF5 file as the root attribute ``run_config``."""
    file.attrs[ATTRIBUTE] = to_json(document)


def save_beside(document: dict[str, Any], folder: str | os.PathLike) -> Path:
    """Write ``run_config.json`` into a run folder, atomically; returns its path."""
    from mrcnn.checkpoint import atomic_write

    path = Path(folder) / FILE_NAME
    text = to_json(document, indent=1) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def read_run_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The document stored in a checkpoint, or None when it has none (written before run
    configs were stored, or not by us). Raises RunConfigError naming the file and the field
    when the attribute is there but malformed, or the file is not HDF5."""
    path = os.fspath(path)
    try:
        with h5py.File(path, "r") as file:
            if ATTRIBUTE not in file.attrs:
                return None
            raw = file.attrs[ATTRIBUTE]
    except OSError as err:
        raise RunConfigError(f"{path}: not a readable HDF5 checkpoint ({err})") from err
    document = _parse(raw, path)
    check_document(document, path)
    return document


def _parse(raw: Any, path: str) -> dict[str, Any]:
    if isinstance(raw, bytes | np.bytes_):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}' is not UTF-8 text "
                                 f"({err})") from err
    if not isinstance(raw, str):
        raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}' must be a JSON text, got "
                             f"{type(raw).__name__}")
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}' is not valid JSON "
                             f"({err})") from err
    if not isinstance(document, dict):
        raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}' must be a JSON object, got "
                             f"{type(document).__name__}")
    return document


def check_document(document: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a document whose core fields are missing or of the wrong kind, naming the file
    and the field."""

    def fail(field: str, why: str) -> None:
        raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}', field '{field}': {why}")

    for key in CORE_KEYS:
        if key not in document:
            fail(key, "missing")
    version = document["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        fail("format_version", f"must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        fail("format_version", f"{version} was written by a newer release (this one reads up "
                               f"to {FORMAT_VERSION}); upgrade ftmtl")
    if not isinstance(document["project_version"], str):
        fail("project_version", f"must be a string, got {document['project_version']!r}")
    if not isinstance(document["network"], str) or not document["network"]:
        fail("network", f"must be a class name, got {document['network']!r}")
    names = document["class_names"]
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(n, str) for n in names)):
        fail("class_names", f"must be a list of strings or null, got {names!r}")
    config = document["config"]
    if not isinstance(config, dict) or not config:
        fail("config", "must be a non-empty object of config attributes")
    bad = [k for k in config if not k.isupper()]
    if bad:
        fail("config", f"keys must be upper-case attribute names, got {bad[:3]}")
