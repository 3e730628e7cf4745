"""Weight checkpoints written by layer name, atomically, and found again for resuming.

Files use the Keras-2 HDF5 weight layout (root attribute ``layer_names``; a group per layer with
``weight_names`` such as ``conv1/kernel:0``; a nested model such as ``rpn_model`` as one group).
That layout is matched by layer name, so a checkpoint of the training model loads into the
inference model, into FT-MTL-Net or its baseline twin (with ``exclude``), and into Matterport-era
tools; the same reader (``mrcnn.weights.load_legacy_h5``) loads our files and theirs.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import keras
import numpy as np

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"mask_rcnn_(?P<name>[\w-]+)_(?P<epoch>\d{4})\.h5$")


def weighted_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Top-level layers that hold weights (a nested model counts as one layer)."""
    for layer in model.layers:
        if layer.weights:
            yield layer


def layer_weight_names(layer: keras.layers.Layer) -> list[str]:
    """Keras-2 style names: ``<layer>/<weight>:0``; a nested model's weights are named by
    their own inner layer, as Keras 2 wrote them."""
    if isinstance(layer, keras.Model):
        names = []
        for inner in weighted_layers(layer):
            names += [f"{inner.name}/{w.name}:0" for w in inner.weights]
        return names
    return [f"{layer.name}/{w.name}:0" for w in layer.weights]


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)``, then move the file into place: a crash mid-write never
    leaves a truncated file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_weights_h5(model: keras.Model, path: str | os.PathLike) -> None:
    """Write the model's weights by layer name (Keras-2 layout), atomically."""

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            layers = list(weighted_layers(model))
            f.attrs["layer_names"] = np.array([layer.name.encode() for layer in layers])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = keras.__version__.encode()
            for layer in layers:
                group = f.create_group(layer.name)
                names = layer_weight_names(layer)
                group.attrs["weight_names"] = np.array([n.encode() for n in names])
                for name, weight in zip(names, layer.weights, strict=True):
                    group.create_dataset(name, data=np.asarray(weight.numpy()))

    atomic_write(path, write)


def save_config_json(config, path: str | os.PathLike) -> None:
    """The configuration beside the checkpoints, so a run can be inspected and rebuilt."""
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def new_log_dir(model_dir: str | os.PathLike, name: str) -> Path:
    """``<model_dir>/<name><YYYYmmddTHHMMSS>``, made unique if two runs start together."""
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    base = Path(model_dir) / f"{name.lower()}{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}_{n}")
        n += 1
    return candidate


def checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """The epoch number in a checkpoint's file name (1-based), or None."""
    match = CHECKPOINT_PATTERN.search(Path(path).name)
    return int(match.group("epoch")) if match else None


def find_last_checkpoint(model_dir: str | os.PathLike, name: str) -> Path:
    """The newest complete checkpoint of the newest run of this configuration name."""
    model_dir = Path(model_dir)
    runs = sorted(
        (d for d in model_dir.glob(f"{name.lower()}*") if d.is_dir()),
        key=lambda d: d.name,
    ) if model_dir.is_dir() else []
    for run in reversed(runs):
        checkpoints = sorted(p for p in run.iterdir() if checkpoint_epoch(p) is not None)
        if checkpoints:
            return checkpoints[-1]
    raise FileNotFoundError(
        f"no checkpoint of {name!r} under {model_dir} (looked for "
        f"{name.lower()}*/mask_rcnn_{name.lower()}_NNNN.h5)")
