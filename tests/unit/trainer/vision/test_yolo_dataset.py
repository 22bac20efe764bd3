from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forja_trainer.yolo.dataset import YoloDatasetError, label_path_for, validate_dataset
from forja_trainer.yolo.synthetic import make_yolo_dataset


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return make_yolo_dataset(tmp_path / "ds", train=3, val=2, size=64, names=("a", "b"))


def test_valid_dataset_is_rewritten_with_absolute_paths(dataset: Path, tmp_path: Path) -> None:
    info = validate_dataset(dataset, tmp_path / "out.yaml")
    assert info.names == ["a", "b"] and info.train_images == 3 and info.val_images == 2
    data = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert Path(data["train"]).is_absolute() and Path(data["train"]).is_dir()
    assert data["names"] == {0: "a", 1: "b"}


def test_missing_data_yaml(tmp_path: Path) -> None:
    with pytest.raises(YoloDatasetError, match=r"data\.yaml: missing"):
        validate_dataset(tmp_path, tmp_path / "out.yaml")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", r"expected 'class cx cy w h' \(5 fields\), got 4"),
        ("0 0.5 0.5 0.2 0.1 0.3", "got 6"),
        ("0 0.5 1.5 0.2 0.2", r"cy=1\.5 is not normalised to 0\.\.1"),
        ("0 0.5 0.5 -0.2 0.2", "w=-0.2 is not normalised"),
        ("2 0.5 0.5 0.2 0.2", r"class id 2 out of range 0\.\.1 \(names has 2\)"),
        ("1.5 0.5 0.5 0.2 0.2", "class id 1.5 is not an integer"),
        ("x 0.5 0.5 0.2 0.2", "non-numeric field"),
    ],
)
def test_bad_label_lines_name_file_and_line(
    dataset: Path, tmp_path: Path, line: str, message: str
) -> None:
    label = dataset / "labels" / "val" / "0001.txt"
    label.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(YoloDatasetError, match=message) as info:
        validate_dataset(dataset, tmp_path / "out.yaml")
    assert info.value.path == str(label) and info.value.line == 2


def test_names_and_splits_are_checked(dataset: Path, tmp_path: Path) -> None:
    data_yaml = dataset / "data.yaml"
    good = yaml.safe_load(data_yaml.read_text())
    for patch, message in [
        ({"nc": 3}, "nc: 3 but names lists 2 classes"),
        ({"names": []}, "names: a non-empty list"),
        ({"names": {0: "a", 2: "b"}}, r"names: class ids must be 0\.\.1"),
        ({"val": "images/nowhere"}, "val: .* does not exist"),
        ({"train": None}, "train: a folder"),
    ]:
        data_yaml.write_text(yaml.safe_dump({**good, **patch}))
        with pytest.raises(YoloDatasetError, match=message):
            validate_dataset(dataset, tmp_path / "out.yaml")


def test_dataset_without_boxes_is_refused(dataset: Path, tmp_path: Path) -> None:
    for label in (dataset / "labels").rglob("*.txt"):
        label.write_text("")
    with pytest.raises(YoloDatasetError, match="no boxes"):
        validate_dataset(dataset, tmp_path / "out.yaml")


def test_label_path_follows_ultralytics_rule() -> None:
    assert label_path_for(Path("/d/images/train/x.png")) == Path("/d/labels/train/x.txt")
