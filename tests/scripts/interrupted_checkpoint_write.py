"""Writes checkpoint 1 of a small model, then starts checkpoint 2 and stalls in the middle of
the HDF5 write so that the parent (tests/test_resume.py) can SIGKILL it there.

    interrupted_checkpoint_write.py RUN_DIR

Prints ``WRITING <n>`` (flushed) once part of checkpoint 2 is on disk, then sleeps.
"""

import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np

from mrcnn.checkpoint import save_weights_h5

run_dir = Path(sys.argv[1])


def small_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn_conv1")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="mrcnn_class_logits")(x))


model = small_model()
optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
model.compile(optimizer=optimizer, loss="mse")
x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
y = np.zeros((4, 8, 8, 2), np.float32)
model.fit(x, y, epochs=1, batch_size=2, verbose=0)
save_weights_h5(model, run_dir / "mask_rcnn_x_0001.h5", optimizer=optimizer,
                optimizer_attrs={"epoch": 1, "train_epochs": 3})
np.save(run_dir / "conv1_kernel_epoch1.npy", model.get_layer("conv1").kernel.numpy())
model.fit(x, y, epochs=1, batch_size=2, verbose=0)

original = h5py.Group.create_dataset
written = []


def stalling_create_dataset(self, name, *args, **kwargs):
    result = original(self, name, *args, **kwargs)
    written.append(name)
    if len(written) == 3:
        self.file.flush()
        print(f"WRITING {len(written)}", flush=True)
        time.sleep(120)
    return result


h5py.Group.create_dataset = stalling_create_dataset
save_weights_h5(model, run_dir / "mask_rcnn_x_0002.h5", optimizer=optimizer,
                optimizer_attrs={"epoch": 2, "train_epochs": 3})
print("FINISHED (the parent should have killed this process)", flush=True)
