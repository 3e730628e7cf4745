"""One training step of a tiny Mask R-CNN on one CPU device or under MirroredStrategy over two
logical CPU devices (run as a subprocess: logical devices must be set before TF starts).

Prints a JSON line: the step's total loss and a checksum of the weights after the step."""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

mode = sys.argv[1]
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402

from mrcnn.data import DataGenerator  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402
from samples.shapes.shapes import ShapesDataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared configs
from tiny_config import TinyShapesConfig  # noqa: E402


class Cfg(TinyShapesConfig):
    NAME = "dist"
    IMAGES_PER_GPU = 2 if mode == "single" else 1
    GPU_COUNT = 1 if mode == "single" else 2
    OPTIMIZER = "sgd"
    WEIGHT_DECAY = 0.0


keras.utils.set_random_seed(0)
config = Cfg()
ds = ShapesDataset()
ds.load_shapes(1, 64, 64, seed=3)
ds.add_image("shapes", 1, None, **{k: v for k, v in ds.image_info[0].items()
                                   if k not in ("id", "source", "path")})
ds.prepare()  # two identical images: per-replica and global means coincide
batch = DataGenerator(ds, config, shuffle=False, steps=1, workers=1)[0]
strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mode == "mirrored"
            else tf.distribute.OneDeviceStrategy("/cpu:0"))
model = MaskRCNN("training", config, sys.argv[2], strategy=strategy)
with strategy.scope():
    model.set_trainable(".*")
    model.compile(0.01, 0.9)
tf_data = tf.data.Dataset.from_tensors(batch)
history = model.keras_model.fit(tf_data, epochs=1, verbose=0)
weights = model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0]
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "loss": float(history.history["loss"][0]),
                  "weights": float(np.abs(weights).sum())}))
