"""YOLO weights are loaded as tensors only, into the model the trusted yaml builds.

A pickled Ultralytics checkpoint (or any pickle that would run code) is refused with
how to convert it, and the code does not run; a tensors-only state dict loads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from forja_api.contract import CheckpointRef
from forja_storage.checkpoints import write_pointer
from forja_trainer.yolo import offline
from forja_trainer.yolo.weights import (
    NotTensorsOnlyError,
    load_tensors,
    resume_state,
    state_dict_of,
    transfer,
)

torch = pytest.importorskip("torch")

DATA = "generated://yolo-boxes?train=2&val=2&size=64"
HP = {"epochs": 1, "imgsz": 64, "baseline": False, "export_onnx": False}


@pytest.fixture(autouse=True)
def _ultralytics_config(yolo_config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "forja_trainer.trainers.yolo_detector.import_ultralytics",
        lambda _dir: offline.import_ultralytics(yolo_config_dir),
    )


class _RunsCode:
    """Unpickling this creates ``marker``: what a hostile .pt would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _hostile_pt(path: Path, marker: Path) -> Path:
    # A real torch zip file whose data.pkl builds the object: torch.load's own format.
    torch.save({"model": _RunsCode(marker), "epoch": 1}, path)
    assert not marker.exists()
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _yaml_model(yolo_config_dir: Path) -> Any:
    offline.import_ultralytics(yolo_config_dir)
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(cfg="yolov8n.yaml", nc=1, verbose=False)


def test_a_pickle_that_runs_code_is_refused_and_the_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pt = _hostile_pt(tmp_path / "evil.pt", marker)
    with pytest.raises(NotTensorsOnlyError, match=r"never loads.*state_dict\(\)"):
        load_tensors(pt, "the pretrained weights")
    assert not marker.exists()
    # Control: the same file without weights_only does run the code.
    torch.load(pt, weights_only=False)
    assert marker.exists()


def test_extra_allowed_globals_make_the_load_refuse(tmp_path: Path) -> None:
    pt = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1)}, pt)
    refused = pytest.raises(NotTensorsOnlyError, match="extra globals")
    with torch.serialization.safe_globals([_RunsCode]), refused:
        load_tensors(pt, "w")
    assert set(load_tensors(pt, "w")) == {"w"}


def test_a_tensors_only_state_dict_loads_into_the_yaml_model(
    tmp_path: Path, yolo_config_dir: Path
) -> None:
    source = _yaml_model(yolo_config_dir)
    pt = tmp_path / "weights.pt"
    torch.save(source.state_dict(), pt)
    state = state_dict_of(load_tensors(pt, "pretrained"), "pretrained")
    target = _yaml_model(yolo_config_dir)
    assert transfer(target, state) == len(target.state_dict())
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_a_file_that_is_not_a_forja_checkpoint_is_not_resumed(tmp_path: Path) -> None:
    pt = tmp_path / "last.pt"
    torch.save({"w": torch.zeros(1)}, pt)
    with pytest.raises(NotTensorsOnlyError, match="not a forja YOLO checkpoint"):
        resume_state(load_tensors(pt, "checkpoint"), "checkpoint")


def test_hostile_pretrained_weights_fail_the_job_and_run_nothing(
    tmp_path: Path, run_trainer: Any
) -> None:
    marker = tmp_path / "ran"
    pt = _hostile_pt(tmp_path / "pretrained.pt", marker)
    run = run_trainer(
        "yolo-detector", DATA, "generated", HP, pretrained={"uri": pt.as_uri(), "sha256": _sha(pt)}
    )
    assert run.code == 5 and run.result.reason == "IncompatiblePretrained"
    assert "state_dict()" in (run.result.message or "")
    assert not marker.exists()


def test_a_hostile_resume_checkpoint_fails_the_job_and_runs_nothing(
    tmp_path: Path, run_trainer: Any
) -> None:
    marker = tmp_path / "ran"
    store = tmp_path / "store"
    checkpoints = store / "checkpoints"
    checkpoints.mkdir(parents=True)
    last = _hostile_pt(checkpoints / "last.pt", marker)
    # Its digest is recorded: the file passes the digest check and reaches the loader.
    ref = CheckpointRef(uri=last.as_uri(), epoch=1, sha256=_sha(last))
    write_pointer(checkpoints.as_uri(), ref)
    run = run_trainer(
        "yolo-detector", DATA, "generated", HP, resume_from=checkpoints.as_uri(), store=store
    )
    assert run.code == 2 and run.result.reason == "InvalidConfig", run.result
    assert "never loads" in (run.result.message or "")
    assert not marker.exists()


def test_tensors_only_pretrained_weights_train(
    tmp_path: Path, run_trainer: Any, yolo_config_dir: Path
) -> None:
    pt = tmp_path / "weights.pt"
    torch.save(_yaml_model(yolo_config_dir).state_dict(), pt)
    run = run_trainer(
        "yolo-detector", DATA, "generated", HP, pretrained={"uri": pt.as_uri(), "sha256": _sha(pt)}
    )
    assert run.code == 0, run.result
    # What the job wrote to its checkpoints is tensors only, and loads back as a checkpoint.
    last = load_tensors(run.checkpoint_dir / "last.pt", "checkpoint")
    assert resume_state(last, "checkpoint")["epoch"] == 0


def test_pretrained_tensors_seed_the_model_ultralytics_trains(
    tmp_path: Path, yolo_config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forja_trainer.trainers import yolo_detector as y
    from forja_trainer.yolo.synthetic import make_yolo_dataset

    source = _yaml_model(yolo_config_dir)
    with torch.no_grad():
        source.model[0].conv.weight.fill_(0.123)
    pt = tmp_path / "weights.pt"
    torch.save(source.state_dict(), pt)
    seen: dict[str, Any] = {}
    attach = y.attach

    def spying_attach(model: Any, **hooks: Any) -> None:
        attach(model, **hooks)
        model.add_callback(
            "on_pretrain_routine_end",
            lambda t: seen.setdefault("w", t.model.model[0].conv.weight.detach().clone()),
        )

    monkeypatch.setattr(y, "attach", spying_attach)
    data = make_yolo_dataset(tmp_path / "ds", train=2, val=2, size=64)
    hp = y.YoloHyperparameters(epochs=1, imgsz=64, export_onnx=False, baseline=False)
    y.train_yolo(data, tmp_path / "work", hp, pretrained=pt)
    # The model Ultralytics trains starts from the file's tensors, not a fresh build.
    assert torch.allclose(seen["w"], torch.full_like(seen["w"], 0.123))
