"""Step 1: parse and check the multi-label dataset layout (no TensorFlow here).

Layout under the dataset root::

    images/...                 the pictures (any format tf.io.decode_image reads)
    train_labels.csv           filepath,labels   (labels separated by "|", may be empty)
    val_labels.csv
    test_labels.csv
    config.yaml                optional: ``classes: [a, b, ...]`` and/or ``num_classes: N``

``filepath`` is relative to the root (``images/x.png``) or to ``images/`` (``x.png``).
Every problem raises :class:`InvalidDataset` naming the file, line and field.
Class names come from ``config.yaml`` when it lists them, else from the sorted
union of the training labels; a label in val/test that training never saw is an
unknown label.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from forja_api.contract import InvalidDataset

__all__ = [
    "LABEL_SEPARATOR",
    "SPLITS",
    "MultilabelDataset",
    "Split",
    "load_dataset",
]

SPLITS = ("train", "val", "test")
LABEL_SEPARATOR = "|"
_REQUIRED_COLUMNS = ("filepath", "labels")


@dataclass(frozen=True)
class Split:
    name: str
    paths: list[str]
    """Absolute image paths."""
    targets: npt.NDArray[np.float32]
    """Multi-hot, shape (n, num_classes)."""

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class MultilabelDataset:
    root: Path
    class_names: list[str]
    splits: dict[str, Split] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _read_config_yaml(root: Path) -> dict[str, Any]:
    path = root / "config.yaml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidDataset(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidDataset(f"{path}: expected a mapping, found {type(data).__name__}")
    return data


def _read_rows(root: Path, split: str) -> list[tuple[int, str, list[str]]]:
    path = root / f"{split}_labels.csv"
    if not path.is_file():
        raise InvalidDataset(f"missing file {split}_labels.csv in dataset {root}")
    rows: list[tuple[int, str, list[str]]] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in _REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InvalidDataset(
                f"{path.name}: missing column(s) {', '.join(missing)}; "
                f"expected header 'filepath,labels', found {','.join(header) or '(empty)'}"
            )
        for line, row in enumerate(reader, start=2):
            rel = (row.get("filepath") or "").strip()
            if not rel:
                raise InvalidDataset(f"{path.name} line {line}: empty filepath")
            raw = (row.get("labels") or "").strip()
            labels = [lab.strip() for lab in raw.split(LABEL_SEPARATOR) if lab.strip()]
            rows.append((line, rel, labels))
    if not rows:
        raise InvalidDataset(f"{path.name}: no rows")
    return rows


def _resolve_image(root: Path, rel: str, csv_name: str, line: int) -> str:
    candidate = Path(rel)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InvalidDataset(
            f"{csv_name} line {line}: filepath {rel!r} must be relative inside the dataset"
        )
    for base in (root, root / "images"):
        if (base / candidate).is_file():
            return str(base / candidate)
    raise InvalidDataset(f"{csv_name} line {line}: image {rel!r} not found under {root}/images")


def _class_names(
    config: dict[str, Any], train_rows: list[tuple[int, str, list[str]]]
) -> tuple[list[str], bool]:
    """Return (names, declared): declared when config.yaml lists them."""
    listed = config.get("classes", config.get("names"))
    if listed is not None:
        if isinstance(listed, dict):  # YOLO-style {0: a, 1: b}
            listed = [listed[k] for k in sorted(listed)]
        if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
            raise InvalidDataset("config.yaml: classes must be a list of names")
        if len(set(listed)) != len(listed):
            raise InvalidDataset("config.yaml: classes has duplicate names")
        return list(listed), True
    seen = sorted({lab for _, _, labels in train_rows for lab in labels})
    return seen, False


def load_dataset(root: Path, expected_classes: int | None = None) -> MultilabelDataset:
    """Parse and check the layout under ``root``; raise InvalidDataset on any problem."""
    if not root.is_dir():
        raise InvalidDataset(f"dataset directory {root} does not exist")
    if not (root / "images").is_dir():
        raise InvalidDataset(f"missing directory images/ in dataset {root}")
    config = _read_config_yaml(root)
    rows = {split: _read_rows(root, split) for split in SPLITS}
    names, declared = _class_names(config, rows["train"])
    if not names:
        raise InvalidDataset("train_labels.csv: no labels at all; nothing to learn")

    declared_count = config.get("num_classes", config.get("nc"))
    for source, expected in (("config.yaml num_classes", declared_count),
                             ("hyperparameters.num_classes", expected_classes)):
        if expected is not None and int(expected) != len(names):
            raise InvalidDataset(
                f"class-count mismatch ({source}): expected {int(expected)} classes, "
                f"found {len(names)} ({', '.join(names)})"
            )

    index = {name: i for i, name in enumerate(names)}
    splits: dict[str, Split] = {}
    for split in SPLITS:
        csv_name = f"{split}_labels.csv"
        paths: list[str] = []
        targets = np.zeros((len(rows[split]), len(names)), dtype=np.float32)
        for i, (line, rel, labels) in enumerate(rows[split]):
            for lab in labels:
                if lab not in index:
                    known = "config.yaml classes" if declared else "the training labels"
                    raise InvalidDataset(
                        f"{csv_name} line {line}: unknown label {lab!r} "
                        f"(not in {known}: {', '.join(names)})"
                    )
                targets[i, index[lab]] = 1.0
            paths.append(_resolve_image(root, rel, csv_name, line))
        splits[split] = Split(name=split, paths=paths, targets=targets)
    return MultilabelDataset(root=root, class_names=names, splits=splits)
