"""Backbones: Matterport's layer names, strides and shapes, the FPN, frozen BN, layer presets."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from mrcnn.backbone import (
    LAYER_PRESETS,
    BatchNorm,
    backbone_layer_regex,
    build_backbone,
    build_fpn,
    resnet_graph,
    tiny_graph,
)
from mrcnn.config import Config

SIZE = 64


def make_config(**overrides) -> Config:
    values = {"NAME": "test", "NUM_CLASSES": 2, "IMAGE_MIN_DIM": SIZE, "IMAGE_MAX_DIM": SIZE,
              "TOP_DOWN_PYRAMID_SIZE": 32, "TINY_BACKBONE_FILTERS": (8, 8, 16, 16, 24)}
    values.update(overrides)
    return type("TestConfig", (Config,), values)()


def map_shapes(maps) -> list[tuple]:
    return [None if m is None else tuple(m.shape[1:]) for m in maps]


def weighted_names(model: keras.Model) -> set[str]:
    return {layer.name for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def resnet50_fpn():
    """ResNet-50 + FPN at 64x64, built once: (model, rpn maps, mrcnn maps)."""
    image = keras.Input((SIZE, SIZE, 3))
    rpn_maps, mrcnn_maps = build_backbone(image, make_config(BACKBONE="resnet50"))
    return keras.Model(image, rpn_maps), rpn_maps, mrcnn_maps


# ------------------------------------------------------------------------------------ ResNet
def test_resnet50_layer_names_and_structure(resnet50_fpn):
    model = resnet50_fpn[0]
    names = weighted_names(model)
    assert {"conv1", "bn_conv1"} <= names
    blocks = {stage: sorted({n[4] for n in names if re.fullmatch(rf"res{stage}[a-z]_branch2a", n)})
              for stage in (2, 3, 4, 5)}
    assert blocks == {2: list("abc"), 3: list("abcd"), 4: list("abcdef"), 5: list("abc")}
    # Only the first block of each stage projects its shortcut.
    assert sorted(n for n in names if n.endswith("_branch1")) == [
        "bn2a_branch1", "bn3a_branch1", "bn4a_branch1", "bn5a_branch1",
        "res2a_branch1", "res3a_branch1", "res4a_branch1", "res5a_branch1"]
    convs = [layer for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D) and not layer.name.startswith("fpn_")]
    assert len(convs) == 1 + 16 * 3 + 4
    assert all(conv.use_bias for conv in convs)
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(bns) == len(convs)
    strides = {conv.name: conv.strides[0] for conv in convs}
    assert model.get_layer("conv1").kernel_size == (7, 7)
    assert strides["conv1"] == 2
    assert strides["res2a_branch2a"] == strides["res2a_branch1"] == 1
    for stage in "345":
        assert strides[f"res{stage}a_branch2a"] == strides[f"res{stage}a_branch1"] == 2
        assert strides[f"res{stage}a_branch2b"] == strides[f"res{stage}b_branch2a"] == 1
    assert model.get_layer("res3a_branch2b").kernel_size == (3, 3)
    assert model.get_layer("res4c_branch2c").filters == 1024


def test_resnet101_has_23_stage4_blocks():
    image = keras.Input((SIZE, SIZE, 3))
    maps = resnet_graph(image, "resnet101", stage5=False)
    assert maps[4] is None
    names = weighted_names(keras.Model(image, maps[3]))
    stage4 = sorted({n[4] for n in names if re.fullmatch(r"res4[a-z]_branch2c", n)})
    assert stage4 == list("abcdefghijklmnopqrstuvw")
    assert {"bn4w_branch2c", "res4a_branch1"} <= names
    assert not any(n.startswith(("res5", "bn5")) for n in names)
    assert len([n for n in names if n.startswith("res")]) == 3 * (3 + 4 + 23) + 3


def test_resnet_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="resnet152"):
        resnet_graph(keras.Input((SIZE, SIZE, 3)), "resnet152")


def test_resnet_feature_shapes_follow_input_channels():
    image = keras.Input((SIZE, SIZE, 1))
    maps = resnet_graph(image, "resnet50", stage5=False)
    model = keras.Model(image, maps[3])
    assert model.get_layer("conv1").kernel.shape == (7, 7, 1, 64)
    assert map_shapes(maps) == [(16, 16, 64), (16, 16, 256), (8, 8, 512), (4, 4, 1024), None]


# -------------------------------------------------------------------------------------- tiny
def test_tiny_strides_channels_and_names():
    image = keras.Input((SIZE, SIZE, 3))
    filters = (4, 8, 12, 16, 20)
    maps = tiny_graph(image, filters)
    assert map_shapes(maps) == [(SIZE // s, SIZE // s, f) for s, f in
                                zip((2, 4, 8, 16, 32), filters, strict=True)]
    names = weighted_names(keras.Model(image, maps[4]))
    assert all(re.fullmatch(r"tiny_c[1-5]_(conv|bn)[12]", n) for n in names)
    assert len(names) == 5 * 4
    assert tiny_graph(image, filters, stage5=False)[4] is None
    with pytest.raises(ValueError, match="TINY_BACKBONE_FILTERS"):
        tiny_graph(image, (8, 8, 8))


# --------------------------------------------------------------------------------------- FPN
def test_fpn_names_and_shapes(resnet50_fpn):
    model, rpn_maps, mrcnn_maps = resnet50_fpn
    assert map_shapes(rpn_maps) == [(SIZE // s, SIZE // s, 32) for s in (4, 8, 16, 32, 64)]
    assert mrcnn_maps == rpn_maps[:4]
    names = {layer.name for layer in model.layers if layer.name.startswith("fpn_")}
    assert names == {
        "fpn_c5p5", "fpn_p5upsampled", "fpn_c4p4", "fpn_p4add", "fpn_p4upsampled", "fpn_c3p3",
        "fpn_p3add", "fpn_p3upsampled", "fpn_c2p2", "fpn_p2add",
        "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"}
    assert model.get_layer("fpn_c4p4").kernel_size == (1, 1)
    assert model.get_layer("fpn_p3").kernel_size == (3, 3)


def test_fpn_top_down_arithmetic():
    """With identity lateral convs and 3x3 convs that pass the centre tap, P_k must equal
    C_k + upsample(P_{k+1}) (checked against numpy), and P6 = P5[::2, ::2]."""
    shapes = [(16, 16), (8, 8), (4, 4), (2, 2)]
    inputs = [keras.Input((h, w, 2)) for h, w in shapes]
    model = keras.Model(inputs, build_fpn(*inputs, pyramid_size=2))
    centre = np.zeros((3, 3, 2, 2), np.float32)
    centre[1, 1] = np.eye(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = np.eye(2, dtype=np.float32)[None, None] if layer.kernel_size == (1, 1) \
                else centre
            layer.set_weights([kernel, np.zeros(2, np.float32)])
    rng = np.random.default_rng(0)
    cs = [rng.normal(size=(1, h, w, 2)).astype(np.float32) for h, w in shapes]
    outputs = [np.asarray(p) for p in model(cs)]

    def up(x):
        return x.repeat(2, axis=1).repeat(2, axis=2)

    p5 = cs[3]
    p4 = cs[2] + up(p5)
    p3 = cs[1] + up(p4)
    p2 = cs[0] + up(p3)
    for got, want in zip(outputs, [p2, p3, p4, p5, p5[:, ::2, ::2]], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


# ---------------------------------------------------------------------------- build_backbone
@pytest.mark.parametrize("layout", ["c4", "fpn"])
def test_build_backbone_tiny(layout):
    config = make_config(BACKBONE="tiny", FEATURE_LAYOUT=layout)
    rpn_maps, mrcnn_maps = build_backbone(keras.Input((SIZE, SIZE, 1)), config)
    if layout == "c4":
        assert map_shapes(rpn_maps) == [(4, 4, 16)]
        assert mrcnn_maps == rpn_maps
    else:
        assert map_shapes(rpn_maps) == [(SIZE // s, SIZE // s, 32) for s in (4, 8, 16, 32, 64)]
        assert mrcnn_maps == rpn_maps[:4]
    assert [SIZE // m.shape[1] for m in rpn_maps] == config.BACKBONE_STRIDES


def test_build_backbone_resnet50_c4():
    image = keras.Input((SIZE, SIZE, 3))
    rpn_maps, mrcnn_maps = build_backbone(
        image, make_config(BACKBONE="resnet50", FEATURE_LAYOUT="c4"))
    assert map_shapes(rpn_maps) == [(4, 4, 1024)]
    assert mrcnn_maps == rpn_maps
    names = weighted_names(keras.Model(image, rpn_maps))
    assert "res4f_branch2c" in names
    assert not any(n.startswith(("res5", "bn5", "fpn_")) for n in names)


def test_build_backbone_callable():
    def my_backbone(image, config):
        x = keras.layers.Conv2D(4, 3, strides=8, padding="same", name="mine_c3")(image)
        y = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="mine_c4")(x)
        return [x, y]

    fpn = make_config(BACKBONE=my_backbone, COMPUTE_BACKBONE_SHAPE=[8, 16],
                      RPN_ANCHOR_SCALES=(32, 64))
    rpn_maps, mrcnn_maps = build_backbone(keras.Input((SIZE, SIZE, 3)), fpn)
    assert map_shapes(rpn_maps) == [(8, 8, 4), (4, 4, 4)]
    assert mrcnn_maps == rpn_maps[:1]
    c4 = make_config(BACKBONE=my_backbone, FEATURE_LAYOUT="c4", COMPUTE_BACKBONE_SHAPE=[8, 16],
                     RPN_ANCHOR_SCALES=(32, 64))
    rpn_maps, mrcnn_maps = build_backbone(keras.Input((SIZE, SIZE, 3)), c4)
    assert len(rpn_maps) == 2 and mrcnn_maps == rpn_maps
    wrong = make_config(BACKBONE=my_backbone, FEATURE_LAYOUT="c4")
    with pytest.raises(ValueError, match="BACKBONE returned 2 feature maps"):
        build_backbone(keras.Input((SIZE, SIZE, 3)), wrong)


# -------------------------------------------------------------------------------- frozen BN
@pytest.mark.parametrize("train_bn", [False, True])
def test_train_bn_controls_batch_statistics(train_bn):
    image = keras.Input((32, 32, 3))
    model = keras.Model(image, tiny_graph(image, (4, 4, 4, 4, 4), train_bn=train_bn)[1])
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert bns and all(bn.trainable == train_bn for bn in bns)
    rng = np.random.default_rng(0)
    for bn in bns:
        n = bn.gamma.shape[0]
        bn.set_weights([rng.uniform(0.5, 2, n), rng.normal(size=n), rng.normal(size=n),
                        rng.uniform(0.5, 2, n)])
    x = rng.normal(3, 2, size=(2, 32, 32, 3)).astype(np.float32)
    inference = np.asarray(model(x, training=False))
    training = np.asarray(model(x, training=True))
    assert np.allclose(inference, training) == (not train_bn)


# ------------------------------------------------------------------------------------ presets
LAYER_NAMES = {
    1: ["conv1", "bn_conv1", "tiny_c1_conv1"],
    2: ["res2a_branch2a", "bn2c_branch2c", "tiny_c2_bn2"],
    3: ["res3a_branch1", "bn3d_branch2b", "tiny_c3_conv2"],
    4: ["res4w_branch2c", "bn4a_branch1", "tiny_c4_conv1"],
    5: ["res5c_branch2a", "bn5a_branch2b", "tiny_c5_bn1"],
}
HEAD_NAMES = ["fpn_c5p5", "fpn_p6", "rpn_conv_shared", "rpn_class_raw", "mrcnn_mask",
              "mrcnn_class_logits"]


@pytest.mark.parametrize(("preset", "first_stage"),
                         [("heads", 6), ("5+", 5), ("4+", 4), ("3+", 3), ("all", 1)])
def test_layer_presets_select_stages(preset, first_stage):
    regex = LAYER_PRESETS[preset]
    for stage, names in LAYER_NAMES.items():
        for name in names:
            assert bool(re.fullmatch(regex, name)) == (stage >= first_stage), (preset, name)
    assert all(re.fullmatch(regex, name) for name in HEAD_NAMES)


def test_backbone_layer_regex(resnet50_fpn):
    model = resnet50_fpn[0]
    fpn_regex = backbone_layer_regex(make_config(BACKBONE="resnet50"))
    assert all(re.fullmatch(fpn_regex, name) for name in weighted_names(model))
    c4_regex = backbone_layer_regex(make_config(BACKBONE="resnet101", FEATURE_LAYOUT="c4"))
    assert re.fullmatch(c4_regex, "res4w_branch2c") and re.fullmatch(c4_regex, "bn_conv1")
    assert not re.fullmatch(c4_regex, "fpn_p2")
    tiny_regex = backbone_layer_regex(make_config(BACKBONE="tiny", FEATURE_LAYOUT="c4"))
    assert re.fullmatch(tiny_regex, "tiny_c4_bn2") and not re.fullmatch(tiny_regex, "conv1")
    for regex in (fpn_regex, c4_regex, tiny_regex):
        assert not any(re.fullmatch(regex, name) for name in HEAD_NAMES if "fpn" not in name)

    def custom(image, config):
        return [image]

    custom_regex = backbone_layer_regex(make_config(BACKBONE=custom, FEATURE_LAYOUT="c4"))
    assert re.fullmatch(custom_regex, "my_conv")
    assert not re.fullmatch(custom_regex, "rpn_conv_shared")
    assert not re.fullmatch(custom_regex, "mrcnn_mask")
