"""A tiny Mask R-CNN training run that can be killed and resumed (run as a subprocess by
tests/test_resume.py).

    resumable_train.py MODEL_DIR EPOCHS SLEEP_S [--resume]

Trains the shapes model to EPOCHS epochs of STEPS_PER_EPOCH steps, sleeping SLEEP_S after each
batch so that the parent can kill it mid-epoch. With --resume it first loads the last
checkpoint (``load_weights(find_last())``, what the CLI's ``--weights last`` does). At the end it
loads the last checkpoint into an inference model, runs detect once, and prints one JSON line.
"""

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from mrcnn.model import MaskRCNN
from samples.shapes.shapes import ShapesDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared configs
from tiny_config import TinyShapesConfig  # noqa: E402

model_dir, epochs, sleep_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
resume = "--resume" in sys.argv[4:]


class KillConfig(TinyShapesConfig):
    NAME = "killme"
    IMAGES_PER_GPU = 1
    STEPS_PER_EPOCH = 3
    DATA_WORKERS = 1


class SlowAndWatched(keras.callbacks.Callback):
    """Sleeps after each batch; records the optimizer's iteration count when training starts."""

    def __init__(self) -> None:
        super().__init__()
        self.iterations_at_start = None

    def on_train_begin(self, logs=None) -> None:
        optimizer = self.model.optimizer
        self.iterations_at_start = int(optimizer.iterations.numpy()) if optimizer.built else 0

    def on_train_batch_end(self, batch, logs=None) -> None:
        time.sleep(sleep_s)


keras.utils.set_random_seed(0)
config = KillConfig()
dataset = ShapesDataset()
dataset.load_shapes(6, 64, 64, seed=4)
dataset.prepare()
model = MaskRCNN("training", config, model_dir)
resumed_from = None
if resume:
    resumed_from = model.find_last()
    model.load_weights(resumed_from)
start_epoch = model.epoch
watch = SlowAndWatched()
history = model.train(dataset, None, learning_rate=0.001, epochs=epochs, layers="all",
                      custom_callbacks=[watch], verbose=0)

last = model.find_last()
inference = MaskRCNN("inference", config, model_dir)
report = inference.load_weights(last)
result = inference.detect([dataset.load_image(0)])[0]
print(json.dumps({
    "resumed_from": resumed_from,
    "start_epoch": start_epoch,
    "history_epochs": history.epoch,
    "iterations_at_start": watch.iterations_at_start,
    "iterations_at_end": int(model.keras_model.optimizer.iterations.numpy()),
    "log_dir": model.log_dir,
    "last": last,
    "layers_loaded": len(report.loaded),
    "detect_ok": bool(result["masks"].shape[:2] == (64, 64)
                      and np.isfinite(result["scores"]).all()),
}))
