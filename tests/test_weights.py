"""Weight loading: Keras-2 .h5 files (written here with h5py), keras.applications ResNet-50
conversion and conv1 folding. Nothing is downloaded: every model has random weights."""

from __future__ import annotations

import itertools
import logging

import h5py
import keras
import numpy as np
import pytest

from mrcnn.backbone import resnet_graph, tiny_graph
from mrcnn.weights import (
    LoadReport,
    convert_keras_resnet,
    fold_conv1_kernel,
    keras_resnet50,
    load_legacy_h5,
    matterport_layer_name,
)

RNG = np.random.default_rng(7)
SEEDS = itertools.count(1)


def randomize(model: keras.Model, rng: np.random.Generator) -> None:
    """Random weights everywhere, BN statistics included, so that every weight matters. Small
    variances with gamma ~ sqrt(variance) make BN's epsilon matter without blowing up."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize(layer, rng)
        elif isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            variance = np.exp(rng.uniform(np.log(1e-3), 0, n))
            layer.set_weights([np.sqrt(variance) * rng.uniform(0.5, 1.5, n),
                               rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), variance])
        elif layer.weights:
            layer.set_weights([rng.normal(0, 0.3, w.shape) for w in layer.weights])


def assert_close_to_scale(got, want, rtol=1e-4):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    scale = np.abs(want).max()
    assert scale > 0.1
    assert np.abs(got - want).max() <= rtol * scale


# ------------------------------------------------------------------- keras.applications models
@pytest.fixture(scope="module")
def keras_rn50():
    """keras.applications.ResNet50 with random weights and its conv4_block6_out sub-model."""
    model = keras.applications.ResNet50(weights=None, include_top=False,
                                        input_shape=(None, None, 3))
    randomize(model, np.random.default_rng(0))
    c4 = keras.Model(model.input, model.get_layer("conv4_block6_out").output)
    return model, c4


def our_c4(channels: int) -> keras.Model:
    image = keras.Input((None, None, channels))
    return keras.Model(image, resnet_graph(image, "resnet50", stage5=False)[3])


@pytest.fixture(scope="module")
def ours_rgb():
    return our_c4(3)


@pytest.fixture(scope="module")
def ours_gray():
    return our_c4(1)


def test_matterport_layer_names():
    assert matterport_layer_name("conv1_conv") == "conv1"
    assert matterport_layer_name("conv1_bn") == "bn_conv1"
    assert matterport_layer_name("conv2_block1_0_conv") == "res2a_branch1"
    assert matterport_layer_name("conv3_block4_2_bn") == "bn3d_branch2b"
    assert matterport_layer_name("conv4_block23_3_conv") == "res4w_branch2c"
    assert matterport_layer_name("conv5_block3_out") is None
    assert matterport_layer_name("post_bn") is None


def test_conversion_gives_keras_c4_features(keras_rn50, ours_rgb):
    source, keras_c4 = keras_rn50
    report = convert_keras_resnet(source, ours_rgb)
    x = RNG.normal(size=(1, 96, 96, 3)).astype(np.float32)
    assert_close_to_scale(ours_rgb(x, training=False), keras_c4(x, training=False))
    assert report.missing_in_file == []
    assert {"conv1", "bn_conv1", "res4f_branch2c", "bn4a_branch1"} <= set(report.loaded)
    assert len(report.loaded) == 2 * (1 + 13 * 3 + 3)
    # The C4 target has no stage 5: all of keras' stage 5 is left over.
    assert len(report.unused_in_file) == 2 * (3 * 3 + 1)
    assert all(name.startswith("conv5_") for name in report.unused_in_file)


def test_conversion_flip_bgr(keras_rn50, ours_rgb):
    source, keras_c4 = keras_rn50
    convert_keras_resnet(source, ours_rgb, flip_bgr=True)
    x = RNG.normal(size=(1, 64, 64, 3)).astype(np.float32)
    assert_close_to_scale(ours_rgb(x, training=False), keras_c4(x[..., ::-1], training=False))


def test_conversion_folds_conv1_for_gray(keras_rn50, ours_gray):
    source, keras_c4 = keras_rn50
    convert_keras_resnet(source, ours_gray)
    gray = RNG.normal(size=(1, 64, 64, 1)).astype(np.float32)
    assert_close_to_scale(ours_gray(gray, training=False),
                          keras_c4(np.repeat(gray, 3, axis=-1), training=False))


def test_keras_resnet50_from_local_file_folded(keras_rn50, tmp_path):
    source, keras_c4 = keras_rn50
    path = tmp_path / "resnet50.weights.h5"
    source.save_weights(path)
    gray_model = keras_resnet50(weights=str(path), channels=1)
    assert gray_model.get_layer("conv1_conv").kernel.shape == (7, 7, 1, 64)
    gray_c4 = keras.Model(gray_model.input, gray_model.get_layer("conv4_block6_out").output)
    gray = RNG.normal(size=(1, 64, 64, 1)).astype(np.float32)
    assert_close_to_scale(gray_c4(gray, training=False),
                          keras_c4(np.repeat(gray, 3, axis=-1), training=False))
    with pytest.raises(ValueError, match="channels"):
        keras_resnet50(weights=None, channels=2)


def test_fold_conv1_kernel():
    kernel = RNG.normal(size=(7, 7, 3, 4))
    folded = fold_conv1_kernel(kernel)
    assert folded.shape == (7, 7, 1, 4)
    # A gray patch replicated over 3 channels: the dot product with the full kernel equals the
    # dot product with the folded kernel.
    patch = RNG.normal(size=(7, 7, 1))
    full = np.einsum("hwc,hwco->o", np.repeat(patch, 3, axis=-1), kernel)
    np.testing.assert_allclose(np.einsum("hwc,hwco->o", patch, folded), full)
    with pytest.raises(ValueError, match=r"\(7, 7, 1, 4\)"):
        fold_conv1_kernel(folded)


# ---------------------------------------------------------------------- Keras-2 .h5 files
def small_model(channels: int = 3) -> keras.Model:
    """Matterport-named layers: conv1/bn_conv1, the tiny backbone, a nested ``rpn_model``."""
    image = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(image)
    x = keras.layers.BatchNormalization(name="bn_conv1")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    c4 = tiny_graph(x, (4, 4, 6, 6, 6), stage5=False)[3]
    feature = keras.Input((None, None, 6))
    shared = keras.layers.Conv2D(6, 3, padding="same", activation="relu",
                                 name="rpn_conv_shared")(feature)
    rpn = keras.Model(feature, [
        keras.layers.Conv2D(2, 1, name="rpn_class_raw")(shared),
        keras.layers.Conv2D(4, 1, name="rpn_bbox_pred")(shared),
    ], name="rpn_model")
    outputs = rpn(c4)
    model = keras.Model(image, outputs)
    randomize(model, np.random.default_rng(next(SEEDS)))
    return model


def keras2_layout(model: keras.Model) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """(group name, [(weight name, value)]) per layer, as Keras 2 saved them: weight names
    'layer/kernel:0'; a nested model is one group whose weight names carry the inner layer's
    name; layers without weights are listed with no weights."""
    groups = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            weights = [(f"{inner.name}/{w.name}:0", np.asarray(w)) for inner in layer.layers
                       for w in inner.weights]
        else:
            weights = [(f"{layer.name}/{w.name}:0", np.asarray(w)) for w in layer.weights]
        groups.append((layer.name, weights))
    return groups


def encode(names: list[str], as_bytes: bool):
    return np.array([n.encode() for n in names]) if as_bytes else names


def write_keras2_h5(path, groups, *, as_bytes=True, chunks=1, full_model=False):
    """Write ``groups`` in the Keras-2 layout with h5py."""
    with h5py.File(path, "w") as file:
        file.attrs["backend"] = "tensorflow"
        root = file.create_group("model_weights") if full_model else file
        names = [name for name, _ in groups]
        if chunks == 1:
            root.attrs["layer_names"] = encode(names, as_bytes)
        else:
            for index, part in enumerate(np.array_split(np.array(names), chunks)):
                root.attrs[f"layer_names{index}"] = encode(part.tolist(), as_bytes)
        for name, weights in groups:
            group = root.create_group(name)
            group.attrs["weight_names"] = (encode([w for w, _ in weights], as_bytes)
                                           if weights else np.zeros(0))
            for weight_name, value in weights:
                group.create_dataset(weight_name, data=value)


def weights_of(model: keras.Model) -> dict[str, list[np.ndarray]]:
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(weights_of(layer))
        elif layer.weights:
            found[layer.name] = [np.asarray(w) for w in layer.weights]
    return found


def assert_same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def source_model():
    return small_model()


ALL_LAYERS = sorted(["conv1", "bn_conv1", "rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"]
                    + [f"tiny_c{s}_{k}{i}" for s in range(1, 5) for k in ("conv", "bn")
                       for i in (1, 2)])


@pytest.mark.parametrize("variant", [
    {"as_bytes": True},
    {"as_bytes": False},
    {"as_bytes": False, "chunks": 2},
    {"as_bytes": True, "chunks": 3, "full_model": True},
])
def test_load_by_name(source_model, tmp_path, variant):
    path = tmp_path / "weights.h5"
    write_keras2_h5(path, keras2_layout(source_model), **variant)
    target = small_model()
    x = RNG.normal(size=(1, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(target(x)[0], source_model(x)[0])
    report = load_legacy_h5(target, path)
    assert report == LoadReport(loaded=ALL_LAYERS, excluded=[], missing_in_file=[],
                                unused_in_file=[])
    source_weights = weights_of(source_model)
    for name, values in weights_of(target).items():
        assert_same_weights(values, source_weights[name])
    for got, want in zip(target(x), source_model(x), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_exclude_leaves_layers_untouched(source_model, tmp_path):
    path = tmp_path / "weights.h5"
    write_keras2_h5(path, keras2_layout(source_model))
    target = small_model()
    before = weights_of(target)
    report = load_legacy_h5(target, path, exclude=["bn_conv1", "rpn_class_raw"])
    after, source = weights_of(target), weights_of(source_model)
    assert report.excluded == ["bn_conv1", "rpn_class_raw"]
    assert report.loaded == [n for n in ALL_LAYERS if n not in report.excluded]
    assert report.missing_in_file == [] and report.unused_in_file == []
    for name in ALL_LAYERS:
        assert_same_weights(after[name], before[name] if name in report.excluded else source[name])
    # Excluding the nested model excludes all its layers.
    report = load_legacy_h5(small_model(), path, exclude=["rpn_model"])
    assert report.excluded == ["rpn_bbox_pred", "rpn_class_raw", "rpn_conv_shared"]


def test_report_missing_and_unused(source_model, tmp_path):
    groups = [(name, weights) for name, weights in keras2_layout(source_model)
              if name != "tiny_c3_conv1"]
    groups.append(("mrcnn_mask", [("mrcnn_mask/kernel:0", np.ones((1, 1, 2, 2)))]))
    path = tmp_path / "weights.h5"
    write_keras2_h5(path, groups)
    report = load_legacy_h5(small_model(), path)
    assert report.missing_in_file == ["tiny_c3_conv1"]
    assert report.unused_in_file == ["mrcnn_mask"]
    assert "tiny_c3_conv1" not in report.loaded and len(report.loaded) == len(ALL_LAYERS) - 1


def test_skipped_layers_are_listed_in_a_warning(source_model, tmp_path, caplog):
    groups = [(name, weights) for name, weights in keras2_layout(source_model)
              if name != "tiny_c3_conv1"]
    path = tmp_path / "weights.h5"
    write_keras2_h5(path, groups)
    with caplog.at_level(logging.INFO, logger="mrcnn.weights"):
        load_legacy_h5(small_model(), path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "weights.h5" in warnings[0]
    assert "not in the source: tiny_c3_conv1" in warnings[0]
    caplog.clear()
    write_keras2_h5(path, keras2_layout(source_model))
    with caplog.at_level(logging.INFO, logger="mrcnn.weights"):
        load_legacy_h5(small_model(), path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_file_of_another_architecture_is_refused_and_changes_nothing(tmp_path):
    groups = [("mrcnn_class_logits", [("mrcnn_class_logits/kernel:0", np.ones((4, 3)))]),
              ("res2a_branch2a", [("res2a_branch2a/kernel:0", np.ones((1, 1, 64, 64)))])]
    path = tmp_path / "other_model.h5"
    write_keras2_h5(path, groups)
    target = small_model()
    before = weights_of(target)
    with pytest.raises(ValueError, match=r"other_model\.h5: none of its 2 layers matches.*"
                                         r"mrcnn_class_logits.*model layers: bn_conv1"):
        load_legacy_h5(target, path)
    for name, values in weights_of(target).items():
        assert_same_weights(values, before[name])


@pytest.mark.parametrize("damage", ["truncated", "not_hdf5", "truncated_data"])
def test_a_damaged_file_gets_an_error_that_names_it(source_model, tmp_path, damage):
    path = tmp_path / "damaged.h5"
    write_keras2_h5(path, keras2_layout(source_model))
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:1000])
    elif damage == "not_hdf5":
        path.write_bytes(b"<html>404 Not Found</html>" * 40)
    else:  # the header and layer list survive, the arrays at the end do not
        path.write_bytes(data[:int(len(data) * 0.7)])
    target = small_model()
    before = weights_of(target)
    with pytest.raises(ValueError, match=r"damaged\.h5: not a readable HDF5 weight file"):
        load_legacy_h5(target, path)
    for name, values in weights_of(target).items():
        assert_same_weights(values, before[name])


def test_shape_mismatch_names_layer_and_changes_nothing(source_model, tmp_path):
    path = tmp_path / "weights.h5"
    write_keras2_h5(path, keras2_layout(source_model))
    with h5py.File(path, "r+") as file:
        del file["rpn_model/rpn_conv_shared/kernel:0"]
        file["rpn_model/rpn_conv_shared/kernel:0"] = np.zeros((3, 3, 5, 6))
    target = small_model()
    before = weights_of(target)
    with pytest.raises(ValueError) as error:
        load_legacy_h5(target, path)
    message = str(error.value)
    for part in ("rpn_conv_shared", "kernel:0", "(3, 3, 5, 6)", "(3, 3, 6, 6)", "weights.h5"):
        assert part in message
    for name, values in weights_of(target).items():
        assert_same_weights(values, before[name])


def test_load_in_order(source_model, tmp_path):
    """by_name=False pairs layers by position: renamed groups still load, a count mismatch
    raises."""
    groups = [(f"old_{name}", [(f"old_{w}", value) for w, value in weights])
              for name, weights in keras2_layout(source_model)]
    path = tmp_path / "renamed.h5"
    write_keras2_h5(path, groups)
    target = small_model()
    with pytest.raises(ValueError, match="none of its 21 layers matches"):
        load_legacy_h5(target, path)  # by name: nothing matches
    report = load_legacy_h5(target, path, by_name=False)
    assert report.loaded == ALL_LAYERS
    source = weights_of(source_model)
    for name, values in weights_of(target).items():
        assert_same_weights(values, source[name])
    short = tmp_path / "short.h5"
    write_keras2_h5(short, [g for g in groups if g[0] != "old_bn_conv1"])
    with pytest.raises(ValueError, match="21 layers with weights, the file has 20"):
        load_legacy_h5(target, short, by_name=False)


def test_conv1_folded_from_3_channel_file(tmp_path):
    rgb = small_model(3)
    path = tmp_path / "rgb.h5"
    write_keras2_h5(path, keras2_layout(rgb))
    gray = small_model(1)
    report = load_legacy_h5(gray, path)
    assert report.loaded == ALL_LAYERS
    image = RNG.normal(size=(1, 32, 32, 1)).astype(np.float32)
    for got, want in zip(gray(image), rgb(np.repeat(image, 3, axis=-1)), strict=True):
        assert_close_to_scale(got, want, rtol=1e-5)


def test_not_a_keras2_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.h5.*'layer_names'"):
        load_legacy_h5(small_model(), path)
