"""Step 5: quantization-aware training with tensorflow-model-optimization.

``tfmot.quantization.keras.quantize_model`` refuses EfficientNet (``Rescaling``,
``Multiply`` and friends are not in its registry). What works (ML-STACK-NOTES.md):
clone the model annotating only the layers ``Default8BitQuantizeRegistry``
supports, then ``quantize_apply``; the unannotated layers stay float during QAT
and are quantized by the full-integer converter from the representative data.

The QAT model ends in a sigmoid (probabilities, what the int8 output carries), so
it is fine-tuned with plain binary cross-entropy on the labels.
"""

from __future__ import annotations

from typing import Any

import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as registry_mod,
)

from forja_trainer_tf.tfenv import keras

__all__ = ["build_qat_model", "with_sigmoid"]


def with_sigmoid(logits_model: keras.Model) -> keras.Model:
    """The deployable model: the same graph plus a sigmoid, flat (no nesting)."""
    probs = keras.layers.Activation("sigmoid", name="probabilities")(logits_model.output)
    return keras.Model(logits_model.input, probs, name=logits_model.name + "_probs")


def build_qat_model(prob_model: keras.Model) -> tuple[keras.Model, dict[str, int]]:
    """Annotate the supported layers, apply QAT; return the model and layer counts."""
    registry = registry_mod.Default8BitQuantizeRegistry()
    counts = {"annotated": 0, "skipped": 0}

    def annotate(layer: Any) -> Any:
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if registry.supports(layer):
            counts["annotated"] += 1
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        counts["skipped"] += 1
        return layer

    annotated = keras.models.clone_model(prob_model, clone_function=annotate)
    annotated.set_weights(prob_model.get_weights())
    with tfmot.quantization.keras.quantize_scope():
        qat_model = tfmot.quantization.keras.quantize_apply(annotated)
    return qat_model, counts
