"""run_crossval of one tiny model on one fold under mrcnn.devices.replica_strategy over two
logical CPU devices (run as a subprocess: logical devices must be set before TensorFlow starts).

argv: the synthetic INbreast folder, the output folder. Prints a JSON line: for each model
ftmtl.crossval built, its mode, whether it holds the strategy made here, its replica count and
whether its weights are mirrored; then the fold's checkpoint."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from ftmtl import crossval  # noqa: E402
from mrcnn.devices import replica_strategy  # noqa: E402

two_replicas = replica_strategy(2, "CPU")
built = []
real_build_model = crossval.build_model


def recording_build_model(mode, config, model_dir, strategy=None):
    """The real build_model; notes what each model was built with."""
    model = real_build_model(mode, config, model_dir, strategy=strategy)
    weight = model.keras_model.trainable_weights[0]
    built.append({"mode": mode, "ours": model.strategy is two_replicas,
                  "replicas": model.strategy.num_replicas_in_sync,
                  "gpu_count": config.GPU_COUNT,
                  "mirrored": isinstance(weight.value, tf.distribute.DistributedValues)})
    return model


crossval.build_model = recording_build_model
result = crossval.run_crossval(
    sys.argv[1], sys.argv[2], folds=2, only_folds=(0,), models=("maskrcnn",),
    preset="paper_cpu", schedule_epochs=1, steps_per_epoch=1, image_size=64,
    config_overrides={"IMAGE_MIN_DIM": 64, "IMAGES_PER_GPU": 1, "GPU_COUNT": 2},
    progress=False, deterministic=False, strategy=two_replicas)
checkpoint = json.loads((result.out_dir / "fold_0" / "maskrcnn" / "result.json").read_text())
print(json.dumps({"built": built, "checkpoint": checkpoint["checkpoint"]}))
