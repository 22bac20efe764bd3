"""The teacher and student networks, built offline (``weights=None``).

Each is one flat functional model (no nested sub-models, which tfmot's
``quantize_apply`` cannot handle) from float RGB pixels in [0, 255] to one logit
per class. The head's layers are named ``head_*`` so the teacher's warm-up can
train them alone.

The EfficientNet-Lite students are built with tf_keras's ``EfficientNet``
constructor using the Lite recipe: no squeeze-and-excitation, ReLU6 instead of
swish, and Lite's width/depth/resolution coefficients. (tf_keras ships no Lite
models; unlike the reference Lite, the stem and head widths here still scale with
the width coefficient, which is 1.0 for lite0/lite1 so they match.) ``efficientnet_b0``
is the plain B0 for comparison; ``tiny-cnn`` is a small CNN for tests and smoke runs.
"""

from __future__ import annotations

import copy
from typing import Any

from forja_trainer_tf.tfenv import keras, tf

__all__ = ["HEAD_PREFIX", "build_network", "set_backbone_trainable"]

HEAD_PREFIX = "head_"

_EFFICIENTNETS: dict[str, Any] = {
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "efficientnet_b1": keras.applications.EfficientNetB1,
    "efficientnet_b2": keras.applications.EfficientNetB2,
    "efficientnet_b3": keras.applications.EfficientNetB3,
    "efficientnetv2_b0": keras.applications.EfficientNetV2B0,
}
# (width, depth, default resolution, dropout) of EfficientNet-Lite0..2.
_LITE: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}


def _lite_backbone(arch: str, inputs: tf.Tensor) -> keras.Model:
    # The generic constructor and block table are not exported by keras.applications;
    # imported here so tfenv has set TF_USE_LEGACY_KERAS first.
    from tf_keras.src.applications import efficientnet as effnet  # noqa: PLC0415

    width, depth, resolution, dropout = _LITE[arch]
    blocks = copy.deepcopy(effnet.DEFAULT_BLOCKS_ARGS)
    for block in blocks:
        block["se_ratio"] = 0.0  # Lite drops squeeze-and-excitation (quantizes badly)
    return effnet.EfficientNet(
        width,
        depth,
        resolution,
        dropout_rate=dropout,
        activation=tf.nn.relu6,  # Lite: ReLU6, friendlier to int8 than swish
        blocks_args=blocks,
        model_name=arch,
        include_top=False,
        weights=None,
        input_tensor=inputs,
        pooling="avg",
    )


def _tiny_cnn_features(inputs: tf.Tensor, width: int) -> tf.Tensor:
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, (mult, stride) in enumerate(((1, 2), (2, 2), (2, 1), (4, 2))):
        x = keras.layers.Conv2D(width * mult, 3, strides=stride, padding="same",
                                use_bias=False, name=f"conv{i}")(x)
        # Momentum 0.9: the moving statistics settle within the few hundred steps a
        # small run has (the default 0.99 leaves them near their initial values).
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    return keras.layers.GlobalAveragePooling2D(name="pool")(x)


def build_network(
    arch: str, image_size: int, num_classes: int, *, dropout: float, role: str
) -> keras.Model:
    """A flat model: pixels (N, S, S, 3) in [0, 255] -> logits (N, num_classes)."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    if arch == "tiny-cnn":
        features = _tiny_cnn_features(inputs, width=16 if role == "teacher" else 8)
    elif arch in _LITE:
        features = _lite_backbone(arch, inputs).output
    elif arch in _EFFICIENTNETS:
        backbone = _EFFICIENTNETS[arch](
            include_top=False, weights=None, input_tensor=inputs, pooling="avg"
        )
        features = backbone.output
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(features)
    logits = keras.layers.Dense(num_classes, name=f"{HEAD_PREFIX}logits")(x)
    return keras.Model(inputs, logits, name=f"{role}_{arch}".replace("-", "_"))


def set_backbone_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze (warm-up) or unfreeze (fine-tune) everything but the head."""
    for layer in model.layers:
        if not layer.name.startswith(HEAD_PREFIX):
            layer.trainable = trainable
