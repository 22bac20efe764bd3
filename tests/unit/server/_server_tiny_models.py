"""Tiny torch models written as forja artifacts (state dict + ONNX + manifest).

Each architecture is registered with the server the same way the trainers'
``forja_architectures`` are found: by name plus constructor arguments.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from forja_api.artifact import MANIFEST_NAME, ArtifactFile, ModelManifest, TensorSpec
from forja_api.serving import StageArtifact
from forja_server.architectures import register_architecture


class TinyClassifier(nn.Module):
    def __init__(self, num_classes: int = 3, width: int = 8, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinySegmenter(nn.Module):
    """Fully convolutional: class logits per pixel."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PositionalSegmenter(nn.Module):
    """Two-class logits that depend on where a pixel sits in its input, as a real
    segmenter's do near the borders it cannot see past: class 1's logit is band 0 plus
    ``strength`` times the pixel's offset from the input's centre (both axes, in [-1, 1]).
    Positions come from cumulative sums, so the ONNX graph keeps free side lengths."""

    def __init__(self, in_channels: int = 4, strength: float = 1.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(x[:, :1])
        px = (ones.cumsum(-1) - 0.5) / ones.sum(-1, keepdim=True)
        py = (ones.cumsum(-2) - 0.5) / ones.sum(-2, keepdim=True)
        logit = x[:, :1] + self.strength * (px + py - 1.0)
        return torch.cat([torch.zeros_like(logit), logit], dim=1)


class TinyAutoencoder(nn.Module):
    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyVerifier(nn.Module):
    """A sequence of crops (B, T, C, H, W) -> one smoke logit (B, 1)."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.frame = nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        f = self.frame(x.flatten(0, 1)).view(b, t, -1).mean(1)
        return self.head(f)


class TinyUNet(nn.Module):
    """Two poolings and skips added back: free side lengths that must be multiples of 4
    (other sizes fail inside the runtime, as a real U-Net's do)."""

    def __init__(self, in_channels: int = 4, num_classes: int = 2) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.enc2 = nn.Conv2d(8, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.enc1(x))
        b = torch.relu(self.enc2(self.pool(a)))
        c = torch.relu(self.mid(self.pool(b)))
        return self.head(self.up(self.up(c) + b) + a)


class FixedBatchOne(nn.Module):
    """Reshapes to a batch of one: runs at batch 1, fails inside the runtime at 8."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.reshape(1, 3 * 8 * 8))


class BrightBoxDetector(nn.Module):
    """A stand-in with the Ultralytics head layout (B, 4 + classes, anchors).

    Anchor 0 is a box over the image's left half scored by its brightness, anchor 1
    a box over the right half scored by that half's brightness: detections are
    predictable, so the pipeline's answer can be checked.
    """

    def __init__(self, size: int = 64) -> None:
        super().__init__()
        self.size = size
        s = float(size)
        boxes = torch.tensor([[s / 4, s / 2, s / 2, s], [3 * s / 4, s / 2, s / 2, s]])
        self.register_buffer("boxes", boxes.T.unsqueeze(0))  # (1, 4, anchors) as cx cy w h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, :, :, : self.size // 2].mean(dim=(1, 2, 3))
        right = x[:, :, :, self.size // 2 :].mean(dim=(1, 2, 3))
        scores = torch.stack([left, right], dim=1).unsqueeze(1)
        boxes = self.boxes + scores * 0  # broadcast to the batch
        return torch.cat([boxes, scores], dim=1)


ARCHITECTURES = {
    "tiny-classifier": TinyClassifier,
    "tiny-segmenter": TinySegmenter,
    "tiny-autoencoder": TinyAutoencoder,
    "tiny-verifier": TinyVerifier,
    "tiny-unet": TinyUNet,
    "positional-segmenter": PositionalSegmenter,
}
for _name, _cls in ARCHITECTURES.items():
    register_architecture(_name, _cls)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_artifact(
    root: Path,
    *,
    name: str,
    module: nn.Module,
    architecture: str | None,
    arch_config: dict[str, Any],
    task: str,
    input_shape: list[int | None],
    fmt: str = "torch-state-dict",
    onnx: bool = True,
    with_weights: bool = True,
    example_shape: list[int] | None = None,
    class_names: list[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    postprocessing: dict[str, Any] | None = None,
    checkpoint_metadata: bool = False,
) -> StageArtifact:
    """Write weights (+ ONNX) and a manifest under root/name; return the stage pointing at it."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    files: dict[str, ArtifactFile] = {}
    if with_weights:
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        obj: Any = state
        if checkpoint_metadata:
            obj = {"model_state_dict": state, "epoch": 3, "metrics": {"acc": 0.9},
                   "config": {"lr": 0.001}}
        torch.save(obj, d / "model.pt")
        files["weights"] = ArtifactFile(path="model.pt", sha256=_sha(d / "model.pt"),
                                        size=(d / "model.pt").stat().st_size)
    if onnx:
        example = torch.rand(example_shape or [1, *[v or 32 for v in input_shape[1:]]])
        dynamic = {0: "batch"}
        for i, v in enumerate(input_shape):
            if v is None and i > 0:
                dynamic[i] = f"d{i}"
        torch.onnx.export(module, (example,), str(d / "model.onnx"), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": dynamic},
                          opset_version=17, dynamo=False)
        files["onnx"] = ArtifactFile(path="model.onnx", sha256=_sha(d / "model.onnx"),
                                     size=(d / "model.onnx").stat().st_size)
    if "weights" not in files and "onnx" in files:
        files["weights"] = files["onnx"]
    manifest = ModelManifest(
        format=fmt, task=task, files=files, architecture=architecture, arch_config=arch_config,
        class_names=class_names or [], inputs=[TensorSpec(name="input", shape=input_shape)],
        outputs=[TensorSpec(name="output", shape=[None])],
        preprocessing=preprocessing or {}, postprocessing=postprocessing or {},
        trainer="tests", framework={"torch": torch.__version__},
    )
    (d / MANIFEST_NAME).write_text(manifest.to_json())
    return StageArtifact(name=name, uri=f"file://{d / MANIFEST_NAME}",
                         sha256=_sha(d / MANIFEST_NAME), format=fmt, version="1.0.0")


def classifier(root: Path, *, onnx: bool = True, metadata: bool = False) -> StageArtifact:
    torch.manual_seed(0)
    return write_artifact(
        root, name="clf", module=TinyClassifier(3), architecture="tiny-classifier",
        arch_config={"num_classes": 3, "width": 8}, task="classification",
        input_shape=[None, 3, 32, 32], onnx=onnx, class_names=["cat", "dog", "smoke"],
        checkpoint_metadata=metadata,
    )


def segmenter(root: Path) -> StageArtifact:
    torch.manual_seed(1)
    return write_artifact(
        root, name="seg", module=TinySegmenter(4, 2), architecture="tiny-segmenter",
        arch_config={"in_channels": 4, "num_classes": 2}, task="segmentation",
        input_shape=[None, 4, None, None], preprocessing={"tile": 32},
    )


def positional_segmenter(root: Path) -> StageArtifact:
    return write_artifact(
        root, name="posseg", module=PositionalSegmenter(4, 0.5),
        architecture="positional-segmenter",
        arch_config={"in_channels": 4, "strength": 0.5}, task="segmentation",
        input_shape=[None, 4, None, None], preprocessing={"tile": 32},
    )


def autoencoder(root: Path) -> StageArtifact:
    torch.manual_seed(2)
    return write_artifact(
        root, name="ae", module=TinyAutoencoder(4), architecture="tiny-autoencoder",
        arch_config={"in_channels": 4}, task="anomaly",
        input_shape=[None, 4, None, None], preprocessing={"tile": 32},
    )


def verifier(root: Path, seq: int = 4) -> StageArtifact:
    torch.manual_seed(3)
    return write_artifact(
        root, name="verifier", module=TinyVerifier(3), architecture="tiny-verifier",
        arch_config={}, task="verification", input_shape=[None, seq, 3, 24, 24],
        postprocessing={"threshold": 0.0},
    )


def unet(root: Path) -> StageArtifact:
    torch.manual_seed(4)
    return write_artifact(
        root, name="unet", module=TinyUNet(4, 2), architecture="tiny-unet",
        arch_config={"in_channels": 4, "num_classes": 2}, task="segmentation",
        input_shape=[None, 4, None, None], preprocessing={"tile": 32},
    )


def fixed_batch_one(root: Path) -> StageArtifact:
    torch.manual_seed(5)
    return write_artifact(
        root, name="batch-one", module=FixedBatchOne(), architecture=None, arch_config={},
        task="classification", input_shape=[None, 3, 8, 8], fmt="onnx", with_weights=False,
    )


def bright_box_detector(root: Path, size: int = 64) -> StageArtifact:
    return write_artifact(
        root, name="detector", module=BrightBoxDetector(size), architecture=None,
        arch_config={}, task="detection", input_shape=[None, 3, size, size], fmt="ultralytics",
        with_weights=False, class_names=["smoke"], preprocessing={"resize": [size, size]},
        postprocessing={"confidence": 0.5},
    )


def manifest_json(stage: StageArtifact) -> dict[str, Any]:
    return json.loads(Path(stage.uri[len("file://"):]).read_text())
