"""Without QAT (disabled here; the same path a QAT failure falls back to) the trainer
still exports a full-integer model and says it used post-training quantization."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from .conftest import TINY_HYPERPARAMETERS, TrainerEnv

pytestmark = pytest.mark.slow


def test_post_training_quantization_is_reported(trainer_env: TrainerEnv) -> None:
    hyper = {
        **TINY_HYPERPARAMETERS,
        "teacher": {**TINY_HYPERPARAMETERS["teacher"], "warmup_epochs": 0, "finetune_epochs": 1},
        "student": {**TINY_HYPERPARAMETERS["student"], "epochs": 1},
        "qat": {"enabled": False},
        "generated": {"train": 64, "val": 32, "test": 32, "image_size": 32, "classes": 3},
    }
    code, lines = trainer_env.run(trainer_env.env(hyper), timeout=900)
    assert code == 0, "\n".join(lines[-30:])
    result = trainer_env.result()
    assert result["ok"] is True
    assert result["metrics"]["qat_applied"] == 0.0
    assert "post-training quantization" in result["message"]
    artifacts = trainer_env.tmp / "artifacts"
    metrics = json.loads((artifacts / "metrics.json").read_text())
    assert metrics["quantization"] == "post-training"
    assert "disabled" in metrics["qat_error"]
    interpreter = Interpreter(model_path=str(artifacts / "model_qat_int8.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.int8
    assert list(out["shape"]) == [1, 3]
