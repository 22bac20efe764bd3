"""Figures for docs/trainer-tf.md, printed, never asserted.

``python -m forja_trainer_tf.benchmark env-size``
    Bytes on disk of the TF image's Python distributions: tensorflow, tf_keras,
    tensorflow-model-optimization and their transitive requirements, then the
    whole trainer-tf extra (adds boto3, kubernetes, pydantic, pillow...).

``python -m forja_trainer_tf.benchmark steps CONFIG.json``
    Runs the pipeline in this process on ``generated://multilabel`` with the
    hyperparameters in CONFIG.json, under a temporary directory, and prints the
    wall time of each of the nine steps and the test metrics.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

__all__ = ["distribution_closure", "main"]

TF_ROOTS = ("tensorflow", "tf_keras", "tensorflow-model-optimization")
IMAGE_ROOTS = (*TF_ROOTS, "boto3", "kubernetes", "pydantic", "pyyaml", "pillow", "numpy")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_closure(roots: tuple[str, ...]) -> dict[str, int]:
    """Installed size in bytes of each distribution the roots need (extras excluded)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if _key(name) in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[_key(name)] = dist
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            match = re.match(r"[A-Za-z0-9_.\-]+", req)
            if match:
                todo.append(match.group(0))
    sizes = {}
    for key, dist in seen.items():
        total = 0
        for f in dist.files or []:
            try:
                total += os.path.getsize(str(dist.locate_file(f)))
            except OSError:
                continue
        sizes[key] = total
    return sizes


def _print_sizes(title: str, sizes: dict[str, int]) -> None:
    print(f"{title}: {sum(sizes.values()) / 1e6:.0f} MB in {len(sizes)} distributions")
    for key, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {size / 1e6:8.1f} MB  {key}")


def _steps(config_path: Path) -> None:
    from forja_trainer_tf.config import parse_config  # noqa: PLC0415 - loads TF
    from forja_trainer_tf.pipeline import PipelineRun  # noqa: PLC0415
    from forja_trainer_tf.progress import ProgressReporter  # noqa: PLC0415
    from forja_trainer_tf.state import CheckpointStore  # noqa: PLC0415

    config = parse_config(json.loads(config_path.read_text()))
    with tempfile.TemporaryDirectory(prefix="forja-tf-bench-") as tmp:
        root = Path(tmp)
        run = PipelineRun(
            config=config, dataset_uri="generated://multilabel",
            checkpoints=CheckpointStore((root / "ckpt").as_uri(), root / "ck-work"),
            artifact_uri=(root / "artifacts").as_uri(), workdir=root / "work",
            reporter=ProgressReporter(stream=open(os.devnull, "w")),  # noqa: SIM115
        )
        start = time.monotonic()
        outcome = run.execute()
        total = time.monotonic() - start
    for step, seconds in run.state.values["step_seconds"].items():
        print(f"{step:18s} {seconds:8.1f} s")
    print(f"{'total':18s} {total:8.1f} s")
    print(json.dumps(outcome.metrics))


def main(argv: list[str]) -> int:
    if argv[:1] == ["env-size"]:
        _print_sizes("tensorflow + tf_keras + tfmot and deps", distribution_closure(TF_ROOTS))
        _print_sizes("whole TF trainer image env", distribution_closure(IMAGE_ROOTS))
        return 0
    if argv[:1] == ["steps"] and len(argv) == 2:
        _steps(Path(argv[1]))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
