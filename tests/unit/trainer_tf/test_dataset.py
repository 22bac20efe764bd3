"""Dataset layout checks and the generated multi-label dataset (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forja_api.contract import InvalidDataset
from forja_trainer_tf.dataset import load_dataset
from forja_trainer_tf.generate import generate_multilabel_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    generate_multilabel_dataset(root, train=12, val=6, test=6, image_size=16, classes=3)
    return root


def test_generated_dataset_loads(dataset: Path) -> None:
    ds = load_dataset(dataset)
    assert ds.class_names == ["red_square", "green_disc", "blue_triangle"]
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [12, 6, 6]
    assert ds.splits["train"].targets.shape == (12, 3)
    with Image.open(ds.splits["train"].paths[0]) as img:
        assert img.size == (16, 16)


def test_generated_labels_match_pixels(tmp_path: Path) -> None:
    """A class marked present has pixels of its colour; an absent one has none."""
    root = tmp_path / "ds"
    generate_multilabel_dataset(root, train=20, val=4, test=4, image_size=32, classes=2)
    ds = load_dataset(root)
    split = ds.splits["train"]
    for path, target in zip(split.paths, split.targets, strict=True):
        with Image.open(path) as pic:
            img = np.asarray(pic).astype(int)
        red = ((img[..., 0] > 180) & (img[..., 1] < 90)).sum()
        green = ((img[..., 1] > 160) & (img[..., 0] < 90)).sum()
        assert (red > 0) == bool(target[0])
        assert (green > 0) == bool(target[1])


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        generate_multilabel_dataset(root, train=8, val=4, test=4, image_size=16, seed=7)
    assert (a / "train_labels.csv").read_text() == (b / "train_labels.csv").read_text()
    name = "images/train_00003.png"
    assert (a / name).read_bytes() == (b / name).read_bytes()


def test_missing_csv(dataset: Path) -> None:
    (dataset / "val_labels.csv").unlink()
    with pytest.raises(InvalidDataset, match=r"missing file val_labels\.csv"):
        load_dataset(dataset)


def test_missing_images_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidDataset, match="missing directory images/"):
        load_dataset(tmp_path / "empty")


def test_missing_image_file(dataset: Path) -> None:
    (dataset / "images/test_00002.png").unlink()
    msg = r"test_labels.csv line 4: image 'images/test_00002.png' not found"
    with pytest.raises(InvalidDataset, match=msg):
        load_dataset(dataset)


def test_wrong_header(dataset: Path) -> None:
    (dataset / "train_labels.csv").write_text("path,tags\nimages/train_00000.png,red_square\n")
    with pytest.raises(InvalidDataset, match=r"train_labels\.csv: missing column"):
        load_dataset(dataset)


def test_unknown_label(dataset: Path) -> None:
    csv = dataset / "val_labels.csv"
    lines = csv.read_text().splitlines()
    lines[2] = "images/val_00001.png,red_square|purple_star"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidDataset, match=r"val_labels.csv line 3: unknown label 'purple_star'"):
        load_dataset(dataset)


def test_class_count_mismatch_in_config_yaml(dataset: Path) -> None:
    (dataset / "config.yaml").write_text("num_classes: 5\n")
    with pytest.raises(InvalidDataset, match="expected 5 classes, found 3"):
        load_dataset(dataset)


def test_class_count_mismatch_with_hyperparameter(dataset: Path) -> None:
    msg = r"hyperparameters.num_classes\): expected 4 classes, found 3"
    with pytest.raises(InvalidDataset, match=msg):
        load_dataset(dataset, expected_classes=4)


def test_classes_from_training_labels_without_config(dataset: Path) -> None:
    (dataset / "config.yaml").unlink()
    ds = load_dataset(dataset)
    assert ds.class_names == sorted(ds.class_names)
    assert set(ds.class_names) <= {"red_square", "green_disc", "blue_triangle"}


def test_path_outside_dataset_refused(dataset: Path) -> None:
    (dataset / "test_labels.csv").write_text("filepath,labels\n../../etc/passwd,red_square\n")
    with pytest.raises(InvalidDataset, match="must be relative inside the dataset"):
        load_dataset(dataset)
