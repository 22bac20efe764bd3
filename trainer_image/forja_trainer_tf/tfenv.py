"""Import TensorFlow the one way this package supports: legacy Keras (tf_keras).

tfmot refuses Keras 3 models, so ``TF_USE_LEGACY_KERAS=1`` must be set before
TensorFlow is first imported (ML-STACK-NOTES.md). Every TF-using module imports
``tf`` and ``keras`` from here.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "tf"]
