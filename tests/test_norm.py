"""Config.NORM: the norm layers in the graph (backbone, FPN, heads), group counts for narrow
layers, Matterport's TRAIN_BN meaning, loading a BatchNorm weight file into a GroupNorm model,
and gradients reaching the norm parameters."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_weights import keras2_layout, write_keras2_h5
from tiny_config import TinyConfig

from mrcnn.backbone import build_backbone, resnet_graph, tiny_graph
from mrcnn.config import Config, ConfigError
from mrcnn.heads import box_head, mask_head
from mrcnn.model import MaskRCNN
from mrcnn.norm import BatchNorm, GroupNorm, group_count, norm_layer, resolve_norm
from mrcnn.weights import load_legacy_h5

SIZE = 64


def make_config(**overrides) -> Config:
    values = {"NAME": "norm", "NUM_CLASSES": 3, "IMAGE_MIN_DIM": SIZE, "IMAGE_MAX_DIM": SIZE,
              "BACKBONE": "tiny", "TOP_DOWN_PYRAMID_SIZE": 32,
              "TINY_BACKBONE_FILTERS": (8, 16, 24, 24, 40)}
    values.update(overrides)
    return type("NormConfig", (Config,), values)()


def norm_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    return {layer.name: layer for layer in model.layers
            if isinstance(layer, (BatchNorm, GroupNorm))}


# ----------------------------------------------------------------------------- the switch
@pytest.mark.parametrize(("channels", "max_groups", "want"), [
    (1024, 32, 32), (64, 32, 32), (48, 32, 24), (40, 32, 20), (24, 32, 24), (16, 32, 16),
    (7, 32, 7), (30, 8, 6), (13, 4, 1)])
def test_group_count_is_the_largest_divisor_up_to_the_limit(channels, max_groups, want):
    groups = group_count(channels, max_groups)
    assert groups == want
    assert channels % groups == 0


def test_train_bn_keeps_matterports_meaning_when_norm_is_unset():
    assert resolve_norm(None, False) == "frozen_batch"
    assert resolve_norm(None, True) == "batch"
    assert resolve_norm(None, None) == "batch"
    assert resolve_norm("group", False) == "group"
    with pytest.raises(ValueError, match="norm must be one of"):
        resolve_norm("instance")


def test_config_refuses_an_unknown_norm():
    with pytest.raises(ConfigError, match="NORM"):
        make_config(NORM="layer")


def test_norm_layer_kinds():
    group = norm_layer("group", "g", 48)
    assert isinstance(group, GroupNorm) and group.groups == 24
    frozen = norm_layer("frozen_batch", "f", 8)
    assert isinstance(frozen, BatchNorm) and not frozen.trainable
    assert norm_layer("batch", "b", 8).trainable


# -------------------------------------------------------------------------- in the graph
@pytest.mark.parametrize("norm", ["group", "batch", "frozen_batch"])
def test_tiny_backbone_and_fpn_use_the_configured_norm(norm):
    config = make_config(NORM=norm, FEATURE_LAYOUT="fpn")
    image = keras.Input((SIZE, SIZE, 3))
    rpn_maps, _ = build_backbone(image, config)
    model = keras.Model(image, rpn_maps)
    found = norm_layers(model)
    backbone = {n: layer for n, layer in found.items() if n.startswith("tiny_")}
    assert len(backbone) == 10  # two convs a stage, five stages
    want = GroupNorm if norm == "group" else BatchNorm
    assert all(isinstance(layer, want) for layer in backbone.values())
    fpn = sorted(n for n in found if n.startswith("fpn_"))
    if norm == "group":
        # GroupNorm after the four lateral and the four output convolutions.
        assert fpn == sorted(f"fpn_{n}_gn" for n in ("c5p5", "c4p4", "c3p3", "c2p2",
                                                      "p2", "p3", "p4", "p5"))
        # Narrow layers get a group count that divides them: 8 and 24 channels, 40 -> 20.
        assert found["tiny_c1_bn1"].groups == 8
        assert found["tiny_c3_bn2"].groups == 24
        assert found["tiny_c5_bn1"].groups == 20
    else:
        assert fpn == []  # Matterport's FPN has no norm layer
        assert all(layer.trainable == (norm == "batch") for layer in backbone.values())


def test_resnet_layers_keep_matterports_names_under_group_norm():
    image = keras.Input((SIZE, SIZE, 3))
    c4 = resnet_graph(image, "resnet50", stage5=False, norm="group")[3]
    found = norm_layers(keras.Model(image, c4))
    assert {"bn_conv1", "bn2a_branch2a", "bn2a_branch1", "bn4f_branch2c"} <= set(found)
    assert all(isinstance(layer, GroupNorm) and layer.groups == 32 for layer in found.values())


def test_train_bn_argument_still_works():
    image = keras.Input((32, 32, 3))
    frozen = norm_layers(keras.Model(image, tiny_graph(image, (4,) * 5, train_bn=False)[1]))
    trained = norm_layers(keras.Model(image, tiny_graph(image, (4,) * 5, train_bn=True)[1]))
    assert frozen and not any(layer.trainable for layer in frozen.values())
    assert trained and all(layer.trainable for layer in trained.values())


def head_norms(config) -> dict[str, keras.layers.Layer]:
    rois = keras.Input((4, 4))
    meta = keras.Input((config.IMAGE_META_SIZE,))
    feature = keras.Input((8, 8, 16))
    _, _, deltas = box_head(rois, [feature], meta, config)
    _, masks = mask_head(rois, [feature], meta, config)
    return norm_layers(keras.Model([rois, meta, feature], [deltas, masks]))


def test_matterport_heads_use_the_configured_norm():
    for norm, want in (("group", GroupNorm), ("frozen_batch", BatchNorm)):
        config = make_config(FEATURE_LAYOUT="c4", HEAD_LAYOUT="matterport", NORM=norm,
                             FPN_CLASSIF_FC_LAYERS_SIZE=32, MASK_HEAD_CHANNELS=16)
        found = head_norms(config)
        assert sorted(found) == sorted(["mrcnn_class_bn1", "mrcnn_class_bn2"]
                                       + [f"mrcnn_mask_bn{i}" for i in range(1, 5)])
        assert all(isinstance(layer, want) for layer in found.values())


def test_paper_mask_head_gets_a_norm_only_when_it_is_trained():
    paper = {"FEATURE_LAYOUT": "c4", "HEAD_LAYOUT": "paper", "MASK_HEAD_CHANNELS": 16}
    # The paper's head has no norm layer; a frozen BatchNorm (an identity from scratch) adds none.
    assert head_norms(make_config(NORM="frozen_batch", **paper)) == {}
    found = head_norms(make_config(NORM="group", **paper))
    assert sorted(found) == ["mrcnn_mask_deconv1_norm", "mrcnn_mask_deconv2_norm"]
    assert all(isinstance(layer, GroupNorm) for layer in found.values())


# ------------------------------------------------------------------------------ weights
def small_net(norm: str) -> keras.Model:
    image = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(image)
    x = norm_layer(norm, "bn_conv1", 8)(x)
    return keras.Model(image, tiny_graph(x, (8, 8, 16, 16, 16), stage5=False, norm=norm)[3])


def test_group_norm_model_loads_a_batch_norm_file_where_shapes_match(tmp_path):
    source = small_net("batch")
    rng = np.random.default_rng(0)
    for layer in source.layers:
        if layer.weights:
            layer.set_weights([rng.normal(size=w.shape).astype(np.float32) ** 2
                               for w in layer.weights])
    path = tmp_path / "matterport_named.h5"
    write_keras2_h5(path, keras2_layout(source))
    target = small_net("group")
    norms = norm_layers(target)
    before = {name: [np.asarray(w) for w in layer.weights] for name, layer in norms.items()}
    report = load_legacy_h5(target, path)
    convs = sorted(layer.name for layer in target.layers
                   if isinstance(layer, keras.layers.Conv2D))
    assert report.loaded == convs
    assert report.other_norm == sorted(norms)
    assert report.missing_in_file == [] and "norm layers of another kind" in report.summary()
    for name in convs:
        for got, want in zip(target.get_layer(name).weights, source.get_layer(name).weights,
                             strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for name, layer in norms.items():  # the GroupNorm parameters are left as initialised
        for got, want in zip(layer.weights, before[name], strict=True):
            np.testing.assert_array_equal(np.asarray(got), want)


# ---------------------------------------------------------------------------- gradients
class GroupTiny(TinyConfig):
    NAME = "norm_grad"
    NORM = "group"
    MASK_HEAD_CHANNELS = 16


def _batch(config) -> dict[str, np.ndarray]:
    from mrcnn.data import DataGenerator
    from samples.shapes.shapes import ShapesDataset

    dataset = ShapesDataset()
    dataset.load_shapes(2, SIZE, SIZE, seed=3)
    dataset.prepare()
    return DataGenerator(dataset, config, shuffle=False, workers=1)[0]


def test_gradient_reaches_group_norm_parameters(tmp_path):
    config = GroupTiny()
    model = MaskRCNN("training", config, tmp_path)
    model.set_trainable(".*")
    trainer = model.keras_model
    batch = {k: tf.convert_to_tensor(v) for k, v in _batch(config).items()}
    with tf.GradientTape() as tape:
        outputs = trainer(batch, training=True)
        total = trainer.total_loss(trainer.compute_losses(batch, outputs))
    norm_vars = [v for layer in trainer.layers if isinstance(layer, GroupNorm)
                 for v in layer.trainable_weights]
    names = {layer.name for layer in trainer.layers if isinstance(layer, GroupNorm)}
    assert {"tiny_c1_bn1", "tiny_c4_bn2", "mrcnn_mask_deconv2_norm"} <= names
    grads = tape.gradient(total, norm_vars)
    assert len(norm_vars) == 2 * len(names)
    assert all(g is not None for g in grads)
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_frozen_batch_norm_is_not_trained_even_under_layers_all(tmp_path):
    model = MaskRCNN("training", TinyConfig(), tmp_path)
    trained = set(model.set_trainable(".*"))
    bns = {layer.name for layer in model.keras_model.layers if isinstance(layer, BatchNorm)}
    assert bns and not bns & trained
