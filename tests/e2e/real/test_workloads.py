"""Every workload's example in manifests/ trains, versions and serves, end to end.

The operator is the Helm-installed one, and every pod runs from a forja image in a runc
container under a real kubelet (tests/e2e/real/conftest.py: the real-node cluster). Each
request is built with the trainer's own data generator and checked in the task's
terms (boxes, a class, a map, multi-label scores).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..conftest import Forja
from ..workloads import http, png, post_json, serve, train_and_version

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def smoke_scene(seed: int = 7) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Bright boxes on dark noise, as generated://yolo-boxes draws them (64 px)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 70, (64, 64, 3), dtype=np.uint8)
    boxes = [(8, 10, 28, 30), (38, 34, 58, 56)]
    for x1, y1, x2, y2 in boxes:
        image[y1:y2, x1:x2] = 255
    return image, boxes


def iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_smoke_detector_verifier_and_pipeline(forja: Forja, forja_ns: str) -> None:
    """Workload 1: stage A (YOLO), stage B (verifier), each served, then the pipeline."""
    ns = forja_ns
    forja.apply_manifest("smoke-verifier-trainingjob.yaml", ns)  # trains beside the detector
    # The manifest's 2 epochs on 24 images are ~6 optimiser steps: enough to version
    # and serve, not to find boxes. From scratch yolov8n needs ~100 steps before boxes
    # appear (tests/unit/trainer/vision), so here: 128 images x 12 epochs, batch 8.
    detector = train_and_version(
        forja, ns, "smoke-detector-trainingjob.yaml",
        dataset={"uri": "generated://yolo-boxes?train=128&val=16&size=64", "format": "yolo"},
        hyperparameters={"epochs": 12, "batch_size": 8, "imgsz": 64})
    verifier = train_and_version(forja, ns, "smoke-verifier-trainingjob.yaml")

    url = serve(forja, ns, "smoke-detector-inferenceservice.yaml", detector.version)
    image, boxes = smoke_scene()
    status, body, _ = http(f"{url}/predict", png(image), "image/png")
    assert status == 200, body[:500]
    answer = json.loads(body)
    print("detector:", json.dumps(answer)[:600])
    assert answer["version"] == detector.version
    dets = answer["prediction"]["detections"]

    url = serve(forja, ns, "smoke-verifier-inferenceservice.yaml", verifier.version)
    from forja_trainer.data.synthetic import smoke_sequences

    seqs, labels = smoke_sequences(4, 4, 32, seed=123)
    answers = [post_json(f"{url}/predict", {"tensor": s.numpy().tolist()})["prediction"]
               for s in seqs]
    print("verifier:", answers, "truth:", labels.tolist())
    for a in answers:
        assert 0.0 <= a["probability"] <= 1.0 and isinstance(a["confirmed"], bool)

    forja.apply_manifest("smoke-pipeline-inferenceservice.yaml", ns)
    forja.wait_isvc_ready("smoke-pipeline", ns)
    url = forja.service_url("smoke-pipeline", ns)
    status, body, _ = http(f"{url}/predict", png(image), "image/png")
    assert status == 200, body[:500]
    answer = json.loads(body)
    print("pipeline:", json.dumps(answer)[:800])
    answer = answer.get("prediction", answer)
    for det in answer["detections"]:
        assert "verification" in det and 0.0 <= det["verification"]["probability"] <= 1.0
    assert {"detector", "verifier", "total"} <= set(answer["timings_ms"])
    assert isinstance(answer["confirmed"], list)

    assert dets, "no detections on a scene like the training data"
    for det in dets:
        assert 0.0 <= det["score"] <= 1.0
        assert len(det["box"]) == 4
    # At least one of the two boxes is found where it is.
    best = max(iou(d["box"], b) for d in dets for b in boxes)
    print(f"detector: {len(dets)} boxes, best IoU with ground truth {best:.2f}")
    assert best > 0.3


def test_handwriting_classifier(forja: Forja, forja_ns: str) -> None:
    """Workload 3: a class per image, better than chance on the training distribution."""
    from forja_trainer.data.synthetic import shapes

    trained = train_and_version(forja, forja_ns, "handwriting-classifier-trainingjob.yaml")
    url = serve(forja, forja_ns, "handwriting-classifier-inferenceservice.yaml", trained.version)
    images, labels, names = shapes([3, 3, 3, 3], 16, seed=4242)
    correct = 0
    for img, label in zip(images, labels, strict=True):
        arr = (img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        status, body, _ = http(f"{url}/predict", png(arr), "image/png")
        assert status == 200, body[:500]
        answer = json.loads(body)["prediction"]
        assert answer["label"] in names and 0.0 <= answer["score"] <= 1.0
        correct += answer["label"] == names[int(label)]
    print(f"classifier: {correct}/{len(labels)} correct (chance {len(labels) // 4})")
    assert correct > len(labels) // 4
    # Bad input is a 4xx naming the problem, never a 5xx.
    status, body, _ = http(f"{url}/predict", b"not an image", "image/png")
    assert 400 <= status < 500, (status, body[:300])


def geotiff_scene(tmp: Path, anomalies: int) -> Path:
    from forja_trainer.geo.synthetic import write_scene

    return write_scene(tmp / "scene.tif", height=64, width=64, seed=99,
                       n_anomalies=anomalies).image


def ask_geotiff(url: str, scene: Path) -> tuple[Any, dict[str, str], Any]:
    import rasterio

    status, body, headers = http(f"{url}/predict/geotiff", scene.read_bytes(), "image/tiff",
                                 timeout=120)
    assert status == 200, body[:500]
    with rasterio.MemoryFile(body) as mem, mem.open() as out, rasterio.open(scene) as src:
        assert out.crs == src.crs and out.transform == src.transform
        assert (out.height, out.width) == (src.height, src.width) and out.count == 1
        return out.read(1), dict(out.tags()), headers


@pytest.mark.parametrize("workload", ["field-segmentation", "field-anomaly"])
def test_geotiff_models(forja: Forja, forja_ns: str, workload: str, tmp_path: Path) -> None:
    """Workload 2: GeoTIFF in, a georeferenced class map / anomaly map out."""
    trained = train_and_version(forja, forja_ns, f"{workload}-trainingjob.yaml")
    url = serve(forja, forja_ns, f"{workload}-inferenceservice.yaml", trained.version)
    scene = geotiff_scene(tmp_path, anomalies=4 if workload == "field-anomaly" else 0)
    band, tags, _ = ask_geotiff(url, scene)
    print(f"{workload}: map {band.shape} {band.dtype}, values {np.unique(band)[:8]}, tags {tags}")
    if workload == "field-segmentation":
        assert band.dtype == np.uint8 and len(np.unique(band)) >= 1
    else:
        assert band.dtype == np.float32 and np.isfinite(band).all() and band.max() > 0
        assert "threshold" in tags and 0.0 <= float(tags["anomalous_share"]) <= 1.0


def test_mobile_multilabel_tflite(forja: Forja, forja_ns: str) -> None:
    """Workload 5: the TF trainer's INT8 TFLite model, served with per-label scores."""
    from forja_trainer_tf.generate import CLASS_STYLES, _draw

    trained = train_and_version(forja, forja_ns, "mobile-multilabel-trainingjob.yaml")
    assert trained.mv["spec"]["format"].lower() in {"tflite", "litert"}, trained.mv["spec"]
    url = serve(forja, forja_ns, "mobile-multilabel-inferenceservice.yaml", trained.version)
    rng = np.random.default_rng(5)
    present = np.array([True, False, True, False])
    status, body, _ = http(f"{url}/predict", png(_draw(present, 32, rng)), "image/png")
    assert status == 200, body[:500]
    answer = json.loads(body)["prediction"]
    print("multilabel:", answer)
    names = [n for n, _, _ in CLASS_STYLES[:4]]
    assert set(answer["scores"]) == set(names)
    assert all(0.0 <= v <= 1.0 for v in answer["scores"].values())
    assert set(answer["labels"]) <= set(names)



def test_restoration_finetune_from_pretrained(forja: Forja, forja_ns: str) -> None:
    """Workload 4: fine-tuning from weights in the store. Nothing is downloaded: the
    "pretrained" NAFNet checkpoint is a from-scratch model of the same architecture,
    put where the manifest's spec.pretrained.uri points (as NAFNet wraps it: params)."""
    import torch

    import forja_architectures as architectures

    from ..workloads import s3_client

    torch.manual_seed(1)
    donor = architectures.build("simple-nafnet", {"width": 16})
    buf = io.BytesIO()
    torch.save({"params": donor.state_dict()}, buf)
    s3 = s3_client(forja)
    if "models" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Body=buf.getvalue(),
                  Key="pretrained_models/nafnet/sidd-width64/NAFNet-SIDD-width64.pth")
    trained = train_and_version(forja, forja_ns, "restoration-trainingjob.yaml")
    url = serve(forja, forja_ns, "restoration-inferenceservice.yaml", trained.version)
    rng = np.random.default_rng(3)
    noisy = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    status, body, _ = http(f"{url}/predict", png(noisy), "image/png")
    assert status == 200, body[:500]
    answer = json.loads(body)["prediction"]
    out = np.asarray(answer["data"])
    print(f"restoration: output {answer['shape']}, range {out.min():.3f}..{out.max():.3f}")
    assert out.size == 3 * 32 * 32 and np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
