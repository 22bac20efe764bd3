"""Run in its own process (tensorflow must not share a process with torch):
writes a tiny full-integer TFLite multi-label model, its float predictions on
fixed inputs, inference_config.json and labels.txt into argv[1]."""

import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.modules["triton"] = None  # type: ignore[assignment]

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

out = Path(sys.argv[1])
tf.random.set_seed(1337)
inp = keras.Input((16, 16, 3))
x = keras.layers.Rescaling(1.0 / 255)(inp)
x = keras.layers.Conv2D(4, 3, activation="relu")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(inp, keras.layers.Dense(3, activation="sigmoid")(x))
rng = np.random.default_rng(0)
samples = rng.integers(0, 256, (24, 16, 16, 3)).astype(np.float32)


def representative():
    for s in samples:
        yield [s[None]]


conv = tf.lite.TFLiteConverter.from_keras_model(model)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
conv.representative_dataset = representative
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
conv.inference_input_type = tf.uint8
conv.inference_output_type = tf.int8
(out / "model_qat_int8.tflite").write_bytes(conv.convert())
np.save(out / "inputs.npy", samples[:6].astype(np.uint8))
np.save(out / "float_probs.npy", model.predict(samples[:6], verbose=0))
(out / "labels.txt").write_text("cloud\nsmoke\nfire\n")
(out / "inference_config.json").write_text(json.dumps({
    "input_shape": [1, 16, 16, 3], "thresholds": {"cloud": 0.5, "smoke": 0.3, "fire": 0.9},
    "preprocessing": {"resize": [16, 16]}}))
