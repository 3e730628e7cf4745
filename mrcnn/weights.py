"""Loading weights from outside Keras 3's own format.

- ``load_legacy_h5``: Keras-2 ``.h5`` files (Matterport's ``mask_rcnn_coco.h5``, old ImageNet
  ResNet files), read with h5py only, by layer name with an ``exclude`` list, or in order.
- ``convert_keras_resnet``: keras.applications' ResNet-50/101 weights onto our Matterport-named
  backbone (``mrcnn.backbone.resnet_graph``).
- ``fold_conv1_kernel``: a 3-channel first convolution turned into a 1-channel one, for grayscale
  input: conv(k, [g, g, g]) = conv(k[..., 0] + k[..., 1] + k[..., 2], g).
- ``download_trained_weights`` (Matterport's name) and ``coco_weights_path``: Matterport's COCO
  weights, fetched to a path or to Keras' cache.

Keras 3 ``.weights.h5`` checkpoints load with ``model.load_weights``; they are not handled here.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.request import urlopen

import h5py
import keras
import numpy as np

from mrcnn.backbone import block_letter
from mrcnn.norm import is_norm_layer

logger = logging.getLogger(__name__)

# The first convolution, whose 3-channel kernel is folded for 1-channel models.
FIRST_CONV = "conv1"


@dataclass
class LoadReport:
    """What a weight load did, by layer name (sorted)."""

    loaded: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    missing_in_file: list[str] = field(default_factory=list)
    unused_in_file: list[str] = field(default_factory=list)
    # Norm layers whose kind differs from the file's (a GroupNorm model and a BatchNorm file:
    # gamma/beta against gamma/beta/mean/variance): left as initialised.
    other_norm: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"loaded {len(self.loaded)} layers, excluded {len(self.excluded)}, "
            f"{len(self.missing_in_file)} model layers not in the source, "
            f"{len(self.unused_in_file)} source layers unused"
        )
        if self.missing_in_file:
            text += f"; not in the source: {_abbreviate(self.missing_in_file)}"
        if self.unused_in_file:
            text += f"; unused: {_abbreviate(self.unused_in_file)}"
        if self.other_norm:
            text += (f"; {len(self.other_norm)} norm layers of another kind than the file's, "
                     f"left as initialised: {_abbreviate(self.other_norm)}")
        return text


def _abbreviate(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... (+{len(names) - limit})" if len(names) > limit else "")


def fold_conv1_kernel(kernel: np.ndarray) -> np.ndarray:
    """[kh, kw, 3, out] -> [kh, kw, 1, out] by summing over the input channels, so that a
    1-channel image gives what the 3-channel kernel gives on that image replicated 3 times."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"fold_conv1_kernel needs a [kh, kw, 3, out] kernel, got shape "
                         f"{kernel.shape}")
    return kernel.sum(axis=2, keepdims=True)


# ------------------------------------------------------------------------------ model traversal
@dataclass
class _ModelLayer:
    layer: keras.layers.Layer
    containers: tuple[str, ...]  # names of the nested models holding it, outermost first

    @property
    def name(self) -> str:
        return self.layer.name


def _weighted_layers(model: keras.Model, containers: tuple[str, ...] = ()) -> list[_ModelLayer]:
    """Layers that own weights, in model order, descending into nested models."""
    found: list[_ModelLayer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _weighted_layers(layer, (*containers, layer.name))
        elif layer.weights:
            found.append(_ModelLayer(layer, containers))
    return found


def _nested_model_names(model: keras.Model) -> set[str]:
    names: set[str] = set()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names |= {layer.name} | _nested_model_names(layer)
    return names


def _is_excluded(entry: _ModelLayer, exclude: set[str]) -> bool:
    return entry.name in exclude or any(name in exclude for name in entry.containers)


def _adapt_conv1(layer_name: str, value: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    """Fold a 3-channel first-conv kernel for a 1-channel model; anything else is unchanged."""
    if (
        layer_name == FIRST_CONV
        and value.ndim == 4
        and value.shape[2] == 3
        and target_shape == (*value.shape[:2], 1, value.shape[3])
    ):
        logger.info("Folding %s's 3-channel kernel to 1 input channel", layer_name)
        return fold_conv1_kernel(value)
    return value


def _check_shapes(
    source: str, layer: keras.layers.Layer, names: list[str], values: list[np.ndarray]
) -> list[np.ndarray]:
    """Values cast to the layer's dtypes; ValueError naming the layer/weight on any mismatch."""
    if len(values) != len(layer.weights):
        raise ValueError(
            f"{source}: layer '{layer.name}' has {len(layer.weights)} weights, the source has "
            f"{len(values)} ({', '.join(names)})"
        )
    checked = []
    for variable, name, value in zip(layer.weights, names, values, strict=True):
        target_shape = tuple(variable.shape)
        value = _adapt_conv1(layer.name, np.asarray(value), target_shape)
        if value.shape != target_shape:
            raise ValueError(
                f"{source}: layer '{layer.name}', weight '{name}': shape {value.shape} in the "
                f"source, {target_shape} in the model"
            )
        checked.append(value.astype(variable.dtype))
    return checked


def _assign(assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]]) -> None:
    for layer, values in assignments:
        for variable, value in zip(layer.weights, values, strict=True):
            variable.assign(value)


# ------------------------------------------------------------------------ Keras-2 file reading
@dataclass
class _FileLayer:
    """One layer's weights in a Keras-2 file: dataset paths relative to ``group``."""

    name: str
    weight_names: list[str]
    group: h5py.Group

    def values(self) -> list[np.ndarray]:
        return [np.asarray(self.group[name]) for name in self.weight_names]


def _has_attribute(attrs: h5py.AttributeManager, key: str) -> bool:
    return key in attrs or f"{key}0" in attrs


def _string_list(attrs: h5py.AttributeManager, key: str, where: str) -> list[str]:
    """A list-of-strings attribute, stored whole or in chunks key0, key1, ...; bytes or str."""
    if key in attrs:
        raw = [attrs[key]]
    else:
        raw = []
        while f"{key}{len(raw)}" in attrs:
            raw.append(attrs[f"{key}{len(raw)}"])
        if not raw:
            raise ValueError(f"{where}: no '{key}' attribute: not a Keras-2 weights file (a "
                             f"Keras 3 .weights.h5 file loads with model.load_weights)")
    items: list[Any] = []
    for chunk in raw:
        if isinstance(chunk, str | bytes):
            items.append(chunk)
        else:
            items += np.asarray(chunk).reshape(-1).tolist()
    return [item.decode("utf8") if isinstance(item, bytes) else str(item) for item in items]


def _weights_root(file: h5py.File) -> h5py.Group:
    """The group holding ``layer_names``: the file itself, or ``model_weights`` in full-model
    saves."""
    if not _has_attribute(file.attrs, "layer_names") and "model_weights" in file:
        return file["model_weights"]
    return file


def _file_layers(file: h5py.File, path: str, nested_models: set[str]) -> list[_FileLayer]:
    """The file's layers that have weights, in file order. A nested model's group (its name is
    a nested model of ours, or its weight names start with several layer names) is split into
    one entry per inner layer, named by the first component of each weight name."""
    root = _weights_root(file)
    entries: list[_FileLayer] = []
    for layer_name in _string_list(root.attrs, "layer_names", path):
        if layer_name not in root:
            raise ValueError(f"{path}: layer '{layer_name}' is listed in 'layer_names' but has "
                             f"no group")
        group = root[layer_name]
        weight_names = _string_list(group.attrs, "weight_names", f"{path}: layer '{layer_name}'")
        for name in weight_names:
            if name not in group:
                raise ValueError(f"{path}: layer '{layer_name}' lists weight '{name}' but has "
                                 f"no such dataset")
        if weight_names:
            entries += _split_nested(layer_name, weight_names, group, nested_models)
    return entries


def _split_nested(
    layer_name: str, weight_names: list[str], group: h5py.Group, nested_models: set[str]
) -> list[_FileLayer]:
    pairs = [(name, name.split("/", 1)[0] if "/" in name else None) for name in weight_names]
    distinct = list(dict.fromkeys(prefix for _, prefix in pairs))
    # A group is a nested model when the model says so, when its weights belong to several
    # inner layers, or when its one inner layer has another name (a one-layer nested model).
    nested = layer_name in nested_models or len(distinct) > 1 or distinct != [layer_name]
    if not nested or None in distinct:
        return [_FileLayer(layer_name, weight_names, group)]
    return [
        _FileLayer(prefix, [n for n, p in pairs if p == prefix], group)
        for prefix in distinct
    ]


# --------------------------------------------------------------------------- legacy .h5 loader
def load_legacy_h5(
    model: keras.Model,
    path: str | os.PathLike[str],
    by_name: bool = True,
    exclude: Iterable[str] | None = None,
) -> LoadReport:
    """Load a Keras-2 ``.h5`` weights (or full-model) file into ``model``.

    by_name=True matches file layers to model layers (nested models included) by name;
    by_name=False pairs the layers that have weights in order, as Keras 2 did. ``exclude`` names
    layers (or nested models) to leave as they are. Within a layer, weights are taken in the
    file's order. A shape mismatch raises ValueError before anything is assigned; the one
    exception is a 3-channel ``conv1`` kernel for a 1-channel model, which is folded.
    """
    path = os.fspath(path)
    exclude_set = {exclude} if isinstance(exclude, str) else set(exclude or ())
    model_layers = _weighted_layers(model)
    try:
        with h5py.File(path, "r") as file:
            entries = _file_layers(file, path, _nested_model_names(model))
            match = _match_by_name if by_name else _match_in_order
            pairs, report = match(model_layers, entries, exclude_set, path)
            if not pairs and report.unused_in_file:
                raise ValueError(
                    f"{path}: none of its {len(entries)} layers matches a layer of this model "
                    f"(a file of another architecture?); file layers: "
                    f"{_abbreviate(report.unused_in_file)}; model layers: "
                    f"{_abbreviate(report.missing_in_file)}")
            assignments = [
                (layer, _check_shapes(path, layer, entry.weight_names, entry.values()))
                for layer, entry in pairs
            ]
    except OSError as err:  # h5py: not HDF5, truncated, or a dataset that cannot be read
        raise ValueError(f"{path}: not a readable HDF5 weight file, perhaps truncated or "
                         f"corrupt ({err})") from err
    _assign(assignments)
    skipped = report.missing_in_file or report.unused_in_file or report.other_norm
    logger.log(logging.WARNING if skipped else logging.INFO, "Weights from %s: %s", path,
               report.summary())
    return report


_Pairs = list[tuple[keras.layers.Layer, _FileLayer]]


def _match_by_name(
    model_layers: list[_ModelLayer], entries: list[_FileLayer], exclude: set[str], path: str
) -> tuple[_Pairs, LoadReport]:
    by_name: dict[str, list[_ModelLayer]] = {}
    for entry in model_layers:
        by_name.setdefault(entry.name, []).append(entry)
    pairs: _Pairs = []
    loaded, excluded, unused, other_norm = set(), set(), set(), set()
    for file_layer in entries:
        targets = by_name.get(file_layer.name, [])
        if file_layer.name in exclude:
            excluded.add(file_layer.name)
        elif not targets:
            unused.add(file_layer.name)
        for target in targets:
            if _is_excluded(target, exclude):
                excluded.add(target.name)
            elif _other_norm_kind(target.layer, file_layer):
                other_norm.add(target.name)
            else:
                pairs.append((target.layer, file_layer))
                loaded.add(target.name)
    missing = {
        entry.name for entry in model_layers
        if entry.name not in loaded | other_norm and not _is_excluded(entry, exclude)
    }
    excluded |= {entry.name for entry in model_layers if _is_excluded(entry, exclude)}
    return pairs, LoadReport(sorted(loaded), sorted(excluded), sorted(missing), sorted(unused),
                             sorted(other_norm))


def _other_norm_kind(layer: keras.layers.Layer, file_layer: _FileLayer) -> bool:
    """A norm layer whose file counterpart has another number of weights: another norm kind
    under the same name (Config.NORM keeps Matterport's names for every kind)."""
    return is_norm_layer(layer) and len(file_layer.weight_names) != len(layer.weights)


def _match_in_order(
    model_layers: list[_ModelLayer], entries: list[_FileLayer], exclude: set[str], path: str
) -> tuple[_Pairs, LoadReport]:
    if len(model_layers) != len(entries):
        raise ValueError(
            f"{path}: the model has {len(model_layers)} layers with weights, the file has "
            f"{len(entries)}; load by name instead (by_name=True)"
        )
    pairs: _Pairs = []
    report = LoadReport()
    for target, file_layer in zip(model_layers, entries, strict=True):
        if _is_excluded(target, exclude):
            report.excluded.append(target.name)
        else:
            pairs.append((target.layer, file_layer))
            report.loaded.append(target.name)
    report.loaded.sort()
    report.excluded.sort()
    return pairs, report


# ------------------------------------------------------------------- keras.applications ResNet
_KERAS_BLOCK = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)")
_BRANCHES = {"0": "1", "1": "2a", "2": "2b", "3": "2c"}
_KERAS_RESNETS: dict[str, Callable[..., keras.Model]] = {
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
}


def matterport_layer_name(keras_name: str) -> str | None:
    """keras.applications ResNet layer name -> ours (Matterport's), or None if it has none:
    conv1_conv -> conv1, conv1_bn -> bn_conv1, conv4_block2_3_conv -> res4b_branch2c,
    conv4_block1_0_bn -> bn4a_branch1."""
    if keras_name == "conv1_conv":
        return FIRST_CONV
    if keras_name == "conv1_bn":
        return "bn_conv1"
    found = _KERAS_BLOCK.fullmatch(keras_name)
    if not found or found[3] not in _BRANCHES:
        return None
    stage, block, branch, kind = found.groups()
    prefix = "res" if kind == "conv" else "bn"
    return f"{prefix}{stage}{block_letter(int(block) - 1)}_branch{_BRANCHES[branch]}"


def keras_resnet(
    architecture: str = "resnet50", weights: str | None = "imagenet", channels: int = 3
) -> keras.Model:
    """keras.applications ResNet-50/101 without its top, for any input size.

    ``weights``: "imagenet" (Keras downloads the file; needs internet), a local weights file, or
    None (random). channels=1 gives the same network with conv1 folded for grayscale input.
    """
    if architecture not in _KERAS_RESNETS:
        raise ValueError(f"architecture must be one of {sorted(_KERAS_RESNETS)}, got "
                         f"{architecture!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    build = _KERAS_RESNETS[architecture]
    rgb = build(include_top=False, weights=weights, input_shape=(None, None, 3))
    if channels == 3:
        return rgb
    gray = build(include_top=False, weights=None, input_shape=(None, None, 1))
    for layer in rgb.layers:
        if not layer.weights:
            continue
        values = layer.get_weights()
        if layer.name == "conv1_conv":
            values[0] = fold_conv1_kernel(values[0])
        gray.get_layer(layer.name).set_weights(values)
    return gray


def keras_resnet50(weights: str | None = "imagenet", channels: int = 3) -> keras.Model:
    """``keras_resnet("resnet50", weights, channels)``."""
    return keras_resnet("resnet50", weights, channels)


def _bn_epsilon_compensated(
    values: list[np.ndarray], source_eps: float, target_eps: float
) -> list[np.ndarray]:
    """[gamma, beta, mean, var] with gamma rescaled so that inference-mode BN gives the same
    output under target_eps as under source_eps:
    gamma' / sqrt(var + target_eps) = gamma / sqrt(var + source_eps)."""
    gamma, beta, mean, variance = (np.asarray(v, dtype=np.float64) for v in values)
    gamma = gamma * np.sqrt(variance + target_eps) / np.sqrt(variance + source_eps)
    return [gamma, beta, mean, variance]


def _converted_values(
    source_layer: keras.layers.Layer, target_layer: keras.layers.Layer, flip_bgr: bool
) -> list[np.ndarray]:
    values = [np.asarray(v) for v in source_layer.get_weights()]
    if isinstance(source_layer, keras.layers.BatchNormalization):
        if not isinstance(target_layer, keras.layers.BatchNormalization) or len(values) != 4:
            raise ValueError(f"layer '{target_layer.name}': expected a BatchNormalization with "
                             f"scale and centre to receive '{source_layer.name}'")
        values = _bn_epsilon_compensated(values, source_layer.epsilon, target_layer.epsilon)
    elif source_layer.name == "conv1_conv" and flip_bgr:
        values[0] = values[0][:, :, ::-1, :]
    return values


def convert_keras_resnet(
    source: keras.Model, target: keras.Model, flip_bgr: bool = False
) -> LoadReport:
    """Copy keras.applications ResNet-50/101 weights onto our Matterport-named layers.

    Only layers present in ``target`` are copied (a "c4" model has no stage 5); ``target`` may
    be a whole Mask R-CNN model. BN epsilons differ (keras 1.001e-5, ours 1e-3): gamma is
    rescaled so the outputs are the same. conv1 is folded when the target takes 1 channel.
    flip_bgr=True reverses conv1's input channels: Keras' ImageNet weights were trained on BGR
    (caffe-style) images, so flip when feeding RGB images (Matterport did not).
    """
    targets: dict[str, list[keras.layers.Layer]] = {}
    for entry in _weighted_layers(target):
        targets.setdefault(entry.name, []).append(entry.layer)
    assignments = []
    loaded, unused = set(), set()
    for layer in source.layers:
        if not layer.weights:
            continue
        name = matterport_layer_name(layer.name)
        if name not in targets:
            unused.add(layer.name)
            continue
        for target_layer in targets[name]:
            values = _converted_values(layer, target_layer, flip_bgr)
            names = [f"{layer.name}/{v.name}" for v in layer.weights]
            assignments.append(
                (target_layer, _check_shapes(source.name, target_layer, names, values))
            )
        loaded.add(name)
    _assign(assignments)
    missing = sorted(set(targets) - loaded)
    report = LoadReport(sorted(loaded), [], missing, sorted(unused))
    logger.info("Weights from keras.applications %s: %s", source.name, report.summary())
    return report



# ------------------------------------------------------------------------------- COCO weights
# Matterport's Mask R-CNN weights trained on MS COCO (a published release asset).
COCO_WEIGHTS_URL = (
    "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
)
# Layers whose shapes depend on the number of classes: left out when COCO weights initialise
# a model with other classes (what Matterport's users pass as ``exclude``).
COCO_CLASS_SPECIFIC_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")


# Seconds a stalled connection may stay silent before the download gives up.
DOWNLOAD_TIMEOUT_S = 60


class WeightsDownloadError(OSError):
    """Weights could not be downloaded (offline, refused, not found); the message says what to
    do instead."""


def download_trained_weights(coco_model_path: str | os.PathLike, verbose: int = 1, *,
                             url: str | None = None) -> None:
    """Download Matterport's COCO weights (``url``, default ``COCO_WEIGHTS_URL``) to
    ``coco_model_path`` (Matterport's name and arguments; progress is logged, not printed).

    The file arrives under a temporary name and is renamed when complete, so a failed download
    leaves nothing behind and an existing file untouched; the failure raises
    WeightsDownloadError naming the URL and the path.
    """
    url = url or COCO_WEIGHTS_URL
    path = os.path.abspath(os.fspath(coco_model_path))
    folder = os.path.dirname(path)
    if verbose > 0:
        logger.info("Downloading %s to %s", url, path)
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out, urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as source:
            _copy_with_progress(source, out, show=verbose > 0 and sys.stdout.isatty())
        os.replace(partial, path)
    except OSError as error:  # URLError, HTTPError, timeouts and refused connections included
        raise WeightsDownloadError(
            f"could not download {url} to {path}: {error}. Without network, fetch the file on "
            f"another machine and copy it to {path}") from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    if verbose > 0:
        logger.info("Downloaded %s (%.1f MB)", path, os.path.getsize(path) / 1e6)


def _copy_with_progress(source, out, show: bool, chunk: int = 1 << 20) -> None:
    """Copy a response to a file in chunks, with Keras' progress bar on a terminal (the COCO
    weights are 250 MB)."""
    total = int(source.headers.get("Content-Length") or 0) or None
    bar = keras.utils.Progbar(total, unit_name="byte") if show else None
    done = 0
    while block := source.read(chunk):
        out.write(block)
        done += len(block)
        if bar is not None:
            bar.update(done)


def coco_weights_path(download: bool = True, cache_dir: str | None = None) -> str:
    """Local path of ``mask_rcnn_coco.h5`` in Keras' cache (``~/.keras/models``); downloads it
    there once (``download_trained_weights``) when ``download`` is true and it is missing."""
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".keras")
    local = os.path.join(cache_dir, "models", "mask_rcnn_coco.h5")
    if os.path.exists(local):
        return local
    if not download:
        raise FileNotFoundError(f"{local} does not exist and download=False")
    download_trained_weights(local)
    return local
