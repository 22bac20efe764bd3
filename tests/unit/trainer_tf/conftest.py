"""Helpers to run the TF trainer as its own process (tensorflow never loads in pytest's
process: other test modules import torch, and the two must not share one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
PYTHONPATH = os.pathsep.join(str(REPO / d) for d in ("operator", "trainer_image"))

# Small enough for two shared CPU cores, large enough to learn the coloured shapes.
# The test and validation splits are larger than training needs: on 64 test images one
# image moves macro F1 by about 2 points, which is the margin the tests allow between
# the float and the INT8 student (a CI run failed on 64 with a 2.4-point gap).
TINY_HYPERPARAMETERS: dict[str, Any] = {
    "teacher": {"architecture": "tiny-cnn", "image_size": 32, "warmup_epochs": 1,
                "finetune_epochs": 4, "warmup_lr": 1e-2, "finetune_lr": 5e-3},
    "student": {"architecture": "tiny-cnn", "image_size": 24, "epochs": 6, "lr": 5e-3},
    "qat": {"epochs": 1, "lr": 1e-4},
    "batch_size": 16,
    "export": {"representative_samples": 64},
    "generated": {"train": 256, "val": 128, "test": 256, "image_size": 32, "classes": 4},
}


@dataclass
class TrainerEnv:
    tmp: Path

    @property
    def checkpoint_uri(self) -> str:
        return (self.tmp / "ckpt").as_uri()

    @property
    def artifact_uri(self) -> str:
        return (self.tmp / "artifacts").as_uri()

    @property
    def termination_log(self) -> Path:
        return self.tmp / "termination-log"

    @property
    def workdir(self) -> Path:
        return self.tmp / "work"

    def env(self, hyperparameters: dict[str, Any], dataset_uri: str = "generated://multilabel",
            workdir: Path | None = None, **spec_fields: Any) -> dict[str, str]:
        spec = {
            "model": "mobile-tagger",
            "trainer": "distill-qat-tflite",
            "dataset": {"uri": dataset_uri, "format": "multilabel-csv"},
            "hyperparameters": hyperparameters,
            **spec_fields,
        }
        rendered = {"name": "job", "namespace": "ns", "spec": spec,
                    "checkpointUri": self.checkpoint_uri, "artifactUri": self.artifact_uri}
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORJA_")}
        env.update({
            "PYTHONPATH": PYTHONPATH,
            "FORJA_SPEC": json.dumps(rendered),
            "FORJA_CHECKPOINT_URI": self.checkpoint_uri,
            "FORJA_ARTIFACT_URI": self.artifact_uri,
            "FORJA_TERMINATION_MESSAGE_PATH": str(self.termination_log),
            "FORJA_WORKDIR": str(workdir or self.workdir),
            "CUDA_VISIBLE_DEVICES": "",
        })
        return env

    def popen(self, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "forja_trainer_tf"], env=env, cwd=self.tmp,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def run(self, env: dict[str, str], timeout: float = 600) -> tuple[int, list[str]]:
        proc = subprocess.run(
            [sys.executable, "-m", "forja_trainer_tf"], env=env, cwd=self.tmp,
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        return proc.returncode, (proc.stdout + proc.stderr).splitlines()

    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.termination_log.read_text())
        return data


def progress_lines(lines: list[str]) -> list[dict[str, Any]]:
    prefix = "forja-progress "
    return [json.loads(line[len(prefix):]) for line in lines if line.startswith(prefix)]


@pytest.fixture
def trainer_env(tmp_path: Path) -> TrainerEnv:
    return TrainerEnv(tmp_path)
