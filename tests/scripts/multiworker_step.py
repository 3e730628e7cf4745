"""Training steps of a tiny Mask R-CNN as one worker of a MultiWorkerMirroredStrategy cluster
(TF_CONFIG set by the caller), or alone on one device with the same global batch.

usage: multiworker_step.py single|worker OUT_DIR STEPS

Each replica holds one CPU. The global batch is two copies of one shapes image and its targets,
so the mean over a replica's images and over the global batch coincide however the batch is
split. Prints a JSON line: the replica count, the losses of the steps, and every trainable
weight's sum and SHA-256 after the last step (equal bits across workers: equal digests).
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

mode, out_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode not in ("single", "worker"):
    raise SystemExit(f"mode must be single or worker, got {mode!r}")
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
# The strategy must exist before TensorFlow runs its first op.
strategy = (tf.distribute.MultiWorkerMirroredStrategy() if mode == "worker"
            else tf.distribute.OneDeviceStrategy("/cpu:0"))

import keras  # noqa: E402

from mrcnn.data import DataGenerator  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402
from samples.shapes.shapes import ShapesDataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared configs
from tiny_config import TinyShapesConfig  # noqa: E402

replicas = strategy.num_replicas_in_sync


class Cfg(TinyShapesConfig):
    NAME = "workers"
    GPU_COUNT = replicas  # replicas in the whole cluster
    IMAGES_PER_GPU = 2 // replicas
    OPTIMIZER = "sgd"
    WEIGHT_DECAY = 0.0
    # Every proposal (and ground-truth box) is sampled, so the replicas' random draws, which
    # differ from one process to another, only reorder the ROIs.
    POST_NMS_ROIS_TRAINING = 32
    TRAIN_ROIS_PER_IMAGE = 64
    ROI_POSITIVE_RATIO = 1.0


keras.utils.set_random_seed(0)  # the same initial weights on every worker
config = Cfg()
ds = ShapesDataset()
ds.load_shapes(2, 64, 64, seed=3)  # a batch of two; only the first is used (below)
ds.prepare()
batch = DataGenerator(ds, config, shuffle=False, steps=1, workers=1)[0]
# Both rows the first one, targets included (the generator samples each image's RPN anchors
# on its own): per-replica means then equal the global mean exactly.
batch = {name: np.repeat(value[:1], 2, axis=0) for name, value in batch.items()}
options = tf.data.Options()
# Every worker reads the whole global batch; the strategy hands each replica its share.
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
data = tf.data.Dataset.from_tensors(batch).repeat().with_options(options)
model = MaskRCNN("training", config, out_dir, strategy=strategy)
with strategy.scope():
    model.set_trainable(".*")
    model.compile(0.01, 0.9)
history = model.keras_model.fit(data, epochs=steps, steps_per_epoch=1, verbose=0)
weights = {w.path: np.asarray(w.numpy()) for w in model.keras_model.trainable_weights}
print(json.dumps({
    "replicas": replicas,
    "losses": [float(v) for v in history.history["loss"]],
    "sums": {name: float(np.abs(value).sum()) for name, value in sorted(weights.items())},
    "digest": hashlib.sha256(b"".join(value.tobytes() for _, value in sorted(weights.items())))
    .hexdigest(),
}))
