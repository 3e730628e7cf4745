"""Weight checkpoints written by layer name, atomically, and found again for resuming.

Files use the Keras-2 HDF5 weight layout (root attribute ``layer_names``; a group per layer with
``weight_names`` such as ``conv1/kernel:0``; a nested model such as ``rpn_model`` as one group).
That layout is matched by layer name, so a checkpoint of the training model loads into the
inference model, into FT-MTL-Net or its baseline twin (with ``exclude``), and into Matterport-era
tools; the same reader (``mrcnn.weights.load_legacy_h5``) loads our files and theirs.

Training checkpoints also hold the optimizer's state (an ``optimizer_weights`` group outside
``layer_names``, so weight readers pass it by): each optimizer variable (iteration count, momentum
or Adam slots) under its path without the optimizer's own name, with the optimizer class, the
trainable variables it was built for and the epochs of the run that wrote it. Resuming restores
it, so momentum and a learning-rate schedule carry on where they stopped.

A model's checkpoints also describe their run (the root attribute ``run_config``, a JSON text;
``mrcnn.run_config``), so a copied file still rebuilds its model (``ftmtl.from_checkpoint``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

from mrcnn.run_config import FILE_NAME as RUN_CONFIG_FILE
from mrcnn.run_config import write_attribute as write_run_config_attribute

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"mask_rcnn_(?P<name>[\w-]+)_(?P<epoch>\d{4})\.h5$")
# atomic_write's temporary files: ".<final name>.<random>.tmp".
TEMP_PATTERN = re.compile(r"\.(?P<final>.+)\.\w+\.tmp")
OPTIMIZER_GROUP = "optimizer_weights"


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
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data to disk, so the rename never lands before it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; folders cannot be opened on every platform."""
    with contextlib.suppress(OSError):
        _fsync(folder)


def _is_temp_of_ours(name: str) -> bool:
    match = TEMP_PATTERN.fullmatch(name)
    if not match:
        return False
    final = match.group("final")
    return final in ("config.json", RUN_CONFIG_FILE) or checkpoint_epoch(final) is not None


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary checkpoint and config files a killed ``atomic_write`` left in
    ``directory`` (they never carry a final name, so nothing reads them; they only take disk
    space). Call it only where no other process is writing."""
    directory = Path(directory)
    stale = ([p for p in directory.iterdir() if p.is_file() and _is_temp_of_ours(p.name)]
             if directory.is_dir() else [])
    for p in stale:
        logger.info("removing %s, left by an interrupted checkpoint write", p)
        p.unlink(missing_ok=True)
    return stale


def save_weights_h5(model: keras.Model, path: str | os.PathLike,
                    optimizer: keras.optimizers.Optimizer | None = None,
                    optimizer_attrs: dict[str, Any] | None = None,
                    run_config: dict[str, Any] | None = None) -> None:
    """Write the model's weights by layer name (Keras-2 layout), atomically; with ``optimizer``
    (built) its state too, tagged with ``optimizer_attrs`` (e.g. the epoch); with
    ``run_config`` (``mrcnn.run_config.describe_run``) the description of the run, so the file
    alone rebuilds its model."""

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            if run_config is not None:
                write_run_config_attribute(f, run_config)
            if optimizer is not None and optimizer.built:
                _write_optimizer_state(f, optimizer, model.trainable_variables,
                                       optimizer_attrs or {})
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


# ------------------------------------------------------------------------ optimizer state
@dataclass
class OptimizerState:
    """An optimizer's variables as a checkpoint holds them, keyed by path without the
    optimizer's name (``iteration``, ``conv1_kernel_momentum``)."""

    optimizer_class: str
    trainable_paths: list[str]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


def optimizer_variable_key(optimizer: keras.optimizers.Optimizer, variable) -> str:
    """A variable's path without the optimizer's own name, which Keras numbers per process
    (``sgd``, ``sgd_1``): the rest is built from the model variable's path, stable across runs."""
    path = variable.path
    prefix = f"{optimizer.name}/"
    return path[len(prefix):] if path.startswith(prefix) else path


def _write_optimizer_state(f: h5py.File, optimizer, trainable_variables,
                           attrs: dict[str, Any]) -> None:
    group = f.create_group(OPTIMIZER_GROUP)
    keys = [optimizer_variable_key(optimizer, v) for v in optimizer.variables]
    group.attrs["optimizer_class"] = type(optimizer).__name__.encode()
    group.attrs["variable_keys"] = np.array([k.encode() for k in keys])
    group.attrs["trainable_paths"] = np.array([v.path.encode() for v in trainable_variables])
    for name, value in attrs.items():
        group.attrs[name] = value
    for key, variable in zip(keys, optimizer.variables, strict=True):
        group.create_dataset(key, data=np.asarray(variable.numpy()))


def _decoded(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v)
            for v in np.asarray(values).reshape(-1).tolist()]


def read_optimizer_state(path: str | os.PathLike) -> OptimizerState | None:
    """The optimizer state stored in a checkpoint, or None when it has none (weights only, a
    Matterport file)."""
    with h5py.File(path, "r") as f:
        if OPTIMIZER_GROUP not in f:
            return None
        group = f[OPTIMIZER_GROUP]
        keys = _decoded(group.attrs["variable_keys"])
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in group.attrs.items()
                 if k not in ("optimizer_class", "variable_keys", "trainable_paths")}
        return OptimizerState(
            optimizer_class=_decoded(group.attrs["optimizer_class"])[0],
            trainable_paths=_decoded(group.attrs["trainable_paths"]),
            values={key: np.asarray(group[key]) for key in keys},
            attrs=attrs,
        )


def optimizer_state_mismatch(optimizer, trainable_variables: Sequence,
                             state: OptimizerState) -> str | None:
    """Why ``state`` cannot be restored into ``optimizer`` (None when it can)."""
    if type(optimizer).__name__ != state.optimizer_class:
        return (f"it was written by {state.optimizer_class}, the run uses "
                f"{type(optimizer).__name__}")
    if sorted(v.path for v in trainable_variables) != sorted(state.trainable_paths):
        return "the trainable layers differ (another training stage)"
    return None


def restore_optimizer_state(optimizer, trainable_variables: Sequence, state: OptimizerState,
                            skip: Sequence[str] = ("learning_rate",)) -> list[str]:
    """Build ``optimizer`` for ``trainable_variables`` and assign the stored values by key.

    ``skip``: keys left as they are (the learning rate: the new ``train`` call's own value
    wins; a schedule has no variable, it follows the restored iteration count). Raises
    ValueError when ``optimizer_state_mismatch`` finds a reason, or a shape differs. Returns
    the keys assigned."""
    reason = optimizer_state_mismatch(optimizer, trainable_variables, state)
    if reason:
        raise ValueError(f"optimizer state not restorable: {reason}")
    if not optimizer.built:
        optimizer.build(list(trainable_variables))
    assigned = []
    for variable in optimizer.variables:
        key = optimizer_variable_key(optimizer, variable)
        if key in skip:
            continue
        if key not in state.values:
            logger.warning("optimizer variable %s is not in the checkpoint; left at its "
                           "initial value", key)
            continue
        value = state.values[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"optimizer variable {key}: shape {value.shape} in the checkpoint, "
                             f"{tuple(variable.shape)} in the optimizer")
        variable.assign(value.astype(variable.dtype))
        assigned.append(key)
    return assigned


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
    match = CHECKPOINT_PATTERN.fullmatch(Path(path).name)
    return int(match.group("epoch")) if match else None


def last_checkpoint_in(run_dir: str | os.PathLike) -> Path | None:
    """The highest-epoch checkpoint file in one run folder, or None. Only final names count:
    an interrupted write leaves a temporary name, which never matches."""
    checkpoints = checkpoints_in(run_dir)
    return checkpoints[-1] if checkpoints else None


def checkpoints_in(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoint files of one run folder, oldest epoch first (none when the
    folder does not exist)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted((p for p in run_dir.iterdir() if p.is_file() and checkpoint_epoch(p) is not None),
                  key=lambda p: (checkpoint_epoch(p), p.name))


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` highest-epoch complete checkpoints of one run folder (the
    newest, which resuming and evaluation use, always stays); returns the deleted paths."""
    if keep < 1:
        raise ValueError(f"prune_checkpoints: keep must be at least 1, got {keep}")
    removed = checkpoints_in(run_dir)[:-keep]
    for path in removed:
        path.unlink()
    return removed


BEST_RECORD = "best.json"


def best_checkpoint_path(run_dir: str | os.PathLike, name: str) -> Path:
    """Where a run keeps its best epoch's checkpoint (not a name that pruning or ``last``
    reads: it has no epoch number)."""
    return Path(run_dir) / f"mask_rcnn_{name}_best.h5"


def read_best_record(run_dir: str | os.PathLike) -> dict | None:
    """The run's best-checkpoint record (metric, value, epoch), or None when it has none."""
    path = Path(run_dir) / BEST_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable best-checkpoint record ({err})") from err
    if not isinstance(record, dict) or not {"metric", "value", "epoch"} <= set(record):
        raise ValueError(f"{path}: expected an object with metric, value and epoch")
    return record


def improves(metric: str, value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best``: lower for a loss (a name ending in "loss"), higher
    otherwise; any finite value beats none."""
    if not np.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if metric.endswith("loss") else value > best


def keep_best_checkpoint(checkpoint: str | os.PathLike, run_dir: str | os.PathLike, name: str,
                         metric: str, value: float, epoch: int) -> Path:
    """Copy ``checkpoint`` to the run's best name and record why, both atomically."""
    best = best_checkpoint_path(run_dir, name)
    atomic_write(best, lambda tmp: shutil.copyfile(checkpoint, tmp))
    record = {"metric": metric, "value": float(value), "epoch": int(epoch),
              "checkpoint": Path(checkpoint).name}
    atomic_write(Path(run_dir) / BEST_RECORD,
                 lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    return best


def find_last_checkpoint(model_dir: str | os.PathLike, name: str) -> Path:
    """The newest complete checkpoint of the newest run of this configuration name."""
    model_dir = Path(model_dir)
    # <name><YYYYmmddTHHMMSS>[_n]: the timestamp keeps "paper" from matching "paper_cpu" runs
    run_name = re.compile(re.escape(name.lower()) + r"\d{8}T\d{6}(?:_\d+)?")
    runs = sorted(
        (d for d in model_dir.iterdir() if d.is_dir() and run_name.fullmatch(d.name)),
        key=lambda d: d.name,
    ) if model_dir.is_dir() else []
    for run in reversed(runs):
        last = last_checkpoint_in(run)
        if last is not None:
            return last
    raise FileNotFoundError(
        f"no checkpoint of {name!r} under {model_dir} (looked for "
        f"{name.lower()}*/mask_rcnn_{name.lower()}_NNNN.h5)")
