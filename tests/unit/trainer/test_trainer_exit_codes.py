"""The runtime turns each failure into the contract's exit code and a Result naming why."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from PIL import Image

import forja_architectures as architectures
from forja_api.contract import ExitCode, Result
from forja_trainer.progress import ProgressReporter
from forja_trainer.runtime import execute


def _run(spec: str, tmp_path: Path) -> tuple[int, Result]:
    code, result = execute(
        spec, workdir=tmp_path / "work", progress=ProgressReporter([]), install_signals=False
    )
    written = Result.from_termination_message((tmp_path / "termination-log").read_text())
    assert written == result
    return code, result


def test_invalid_hyperparameter_exits_2_naming_it(make_spec, tmp_path: Path) -> None:
    spec = make_spec("smoke-verifier", "generated://smoke-sequences", {"epochs": 0})
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_CONFIG
    assert result.reason == "InvalidConfig"
    assert "spec.hyperparameters.epochs" in (result.message or "")


def test_trainer_of_another_image_is_invalid_config(make_spec, tmp_path: Path) -> None:
    code, result = _run(make_spec("distill-qat-tflite", "generated://x"), tmp_path)
    assert code == ExitCode.INVALID_CONFIG
    assert "spec.trainer" in (result.message or "")


def test_wrong_dataset_format_names_the_field(make_spec, tmp_path: Path) -> None:
    spec = make_spec("image-classifier", f"file://{tmp_path}", fmt="geotiff")
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_CONFIG
    assert "spec.dataset.format" in (result.message or "")


def test_gpu_requested_but_absent_fails_fast(make_spec, tmp_path: Path) -> None:
    assert not torch.cuda.is_available()
    spec = make_spec("smoke-verifier", "generated://smoke-sequences", resources={"gpus": 1})
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.GPU_UNAVAILABLE
    assert result.reason == "GPUUnavailable"
    assert "spec.resources.gpus" in (result.message or "")


def test_missing_dataset_is_invalid_dataset(make_spec, tmp_path: Path) -> None:
    spec = make_spec("image-classifier", f"file://{tmp_path}/nowhere", fmt="image-folder")
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_DATASET
    assert f"{tmp_path}/nowhere" in (result.message or "")


def _write_png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


def test_image_folder_with_an_empty_class_names_it(make_spec, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_png(data / "cat" / "a.png")
    (data / "dog").mkdir()
    spec = make_spec("image-classifier", f"file://{data}", fmt="image-folder")
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_DATASET
    assert f"{data}/dog has no images" in (result.message or "")


def test_image_folder_class_mismatch(make_spec, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for cls in ("a", "b"):
        for i in range(3):
            _write_png(data / cls / f"{i}.png", 40 * i)
    spec = make_spec(
        "image-classifier",
        f"file://{data}",
        {"class_names": ["a", "b", "c"], "epochs": 1},
        fmt="image-folder",
    )
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_DATASET
    assert "expected 3 classes" in (result.message or "") and "found 2" in (result.message or "")


def test_unreadable_image_names_the_file(make_spec, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_png(data / "a" / "ok.png")
    (data / "b").mkdir(parents=True)
    (data / "b" / "broken.png").write_bytes(b"not a png")
    spec = make_spec("image-classifier", f"file://{data}", fmt="image-folder")
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_DATASET
    assert "broken.png" in (result.message or "")


def test_crop_sequences_with_uneven_frames(make_spec, tmp_path: Path) -> None:
    data = tmp_path / "seqs"
    for i in range(3):
        _write_png(data / "smoke" / "s1" / f"{i}.png")
    for i in range(2):
        _write_png(data / "no_smoke" / "n1" / f"{i}.png")
    spec = make_spec("smoke-verifier", f"file://{data}", fmt="crop-sequences")
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_DATASET
    assert "s1 has 3 frames, the first one had 2" in (result.message or "")


def test_image_pairs_without_partner(make_spec, tmp_path: Path) -> None:
    data = tmp_path / "pairs"
    _write_png(data / "degraded" / "x.png")
    _write_png(data / "clean" / "y.png")
    spec = make_spec("restoration-finetune", f"file://{data}", fmt="image-pairs")
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INVALID_DATASET
    assert "x.png" in (result.message or "")


def test_pretrained_digest_mismatch_exits_5(make_spec, tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save({"intro.weight": torch.zeros(1)}, weights)
    wrong = hashlib.sha256(b"something else").hexdigest()
    spec = make_spec(
        "restoration-finetune",
        "generated://restoration-pairs?n=8&size=16",
        {"epochs": 1, "image_size": 16},
        pretrained={"uri": f"file://{weights}", "sha256": wrong},
    )
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INCOMPATIBLE_PRETRAINED
    assert "sha256 mismatch" in (result.message or "")


def test_pretrained_with_nothing_compatible_exits_5(make_spec, tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save({"params": {"other.weight": torch.zeros(3, 3)}}, weights)
    spec = make_spec(
        "restoration-finetune",
        "generated://restoration-pairs?n=8&size=16",
        {"epochs": 1, "image_size": 16},
        pretrained={"uri": f"file://{weights}"},
    )
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INCOMPATIBLE_PRETRAINED
    assert "no tensor" in (result.message or "")


def test_unpinned_pretrained_weights_are_recorded_with_the_digest_read(
    make_spec, tmp_path: Path
) -> None:
    weights = tmp_path / "donor.pth"
    torch.save(architectures.build("simple-nafnet", {"width": 8}).state_dict(), weights)
    spec = make_spec(
        "restoration-finetune",
        "generated://restoration-pairs?n=8&size=16",
        {"epochs": 1, "image_size": 16, "width": 8},
        pretrained={"uri": f"file://{weights}"},
    )
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.SUCCESS, result.message
    assert result.pretrained is not None
    assert result.pretrained.uri == f"file://{weights}"
    assert result.pretrained.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_pickled_objects_are_refused(make_spec, tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, weights)  # a pickled module, not tensors
    spec = make_spec(
        "restoration-finetune",
        "generated://restoration-pairs?n=8&size=16",
        {"epochs": 1, "image_size": 16},
        pretrained={"uri": f"file://{weights}"},
    )
    code, result = _run(spec, tmp_path)
    assert code == ExitCode.INCOMPATIBLE_PRETRAINED
    assert "weights_only" in (result.message or "")


def test_result_json_is_what_the_operator_parses(make_spec, tmp_path: Path) -> None:
    spec = make_spec("smoke-verifier", "generated://smoke-sequences", {"epochs": 0})
    _run(spec, tmp_path)
    doc = json.loads((tmp_path / "termination-log").read_text())
    assert doc["ok"] is False and doc["reason"] == "InvalidConfig"


def test_a_file_where_the_format_needs_a_folder_is_invalid_dataset(
    make_spec, tmp_path: Path
) -> None:
    for fmt in ("image-folder", "yolo"):
        trainer = "image-classifier" if fmt == "image-folder" else "yolo-detector"
        spec = make_spec(trainer, "file:///etc/passwd", fmt=fmt)
        code, result = _run(spec, tmp_path)
        assert code == ExitCode.INVALID_DATASET, result
        assert "/etc/passwd is a single file" in (result.message or "")


def test_the_stores_4xx_is_permanent_and_its_5xx_is_not() -> None:
    from botocore.exceptions import ClientError

    import forja_storage as storage
    from forja_trainer.context import is_transient

    def answered(status: int) -> storage.StorageError:
        err = ClientError(
            {"Error": {"Code": str(status)}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "GetObject",
        )
        try:
            raise storage.StorageError(f"s3 request failed: {status}", "s3://b/k") from err
        except storage.StorageError as exc:
            return exc

    assert not is_transient(answered(400)) and not is_transient(answered(403))
    assert is_transient(answered(503)) and is_transient(answered(429))
    assert is_transient(ConnectionError("reset"))
