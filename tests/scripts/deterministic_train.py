"""A tiny Mask R-CNN training run made deterministic with ``enable_determinism`` (run as a
subprocess by tests/test_determinism.py: op determinism cannot be switched off again).

    deterministic_train.py MODEL_DIR SEED

Prints one JSON line: SHA-256 digests of every weight before and after training (in model order,
names included) and the per-epoch losses.
"""

import hashlib
import json
import sys
from pathlib import Path

from mrcnn.model import MaskRCNN, enable_determinism
from samples.shapes.shapes import ShapesDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared configs
from tiny_config import TinyShapesConfig  # noqa: E402

model_dir, seed = sys.argv[1], int(sys.argv[2])
enable_determinism(seed)  # before the model is built: the initial weights are drawn then


class DeterministicConfig(TinyShapesConfig):
    NAME = "det"
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 2
    DATA_WORKERS = 2  # batches built by worker threads stay deterministic too


def digest(model) -> str:
    sha = hashlib.sha256()
    for weight in model.keras_model.weights:
        sha.update(weight.path.encode())
        sha.update(weight.numpy().tobytes())
    return sha.hexdigest()


dataset = ShapesDataset()
dataset.load_shapes(6, 64, 64, seed=1)
dataset.prepare()
model = MaskRCNN("training", DeterministicConfig(), model_dir)
initial = digest(model)
history = model.train(dataset, None, learning_rate=0.01, epochs=2, layers="all", verbose=0,
                      seed=seed)
print(json.dumps({"initial": initial, "trained": digest(model),
                  "losses": history.history["loss"]}))
