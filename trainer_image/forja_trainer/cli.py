"""``forja-train run manifests/<file>.yaml``: a TrainingJob run on this machine.

The same runtime as in a pod, with a directory store instead of the cluster's:
checkpoints, the artifact and the Result land under ``--store`` (default
``./.forja-local/<job name>/``), and progress is a bar on the terminal. A second run
with ``--resume`` continues from ``last.pt`` there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from forja_api.contract import LAST_CHECKPOINT, RenderedSpec
from forja_trainer.progress import ProgressReporter
from forja_trainer.runtime import execute

__all__ = ["build_parser", "load_training_job", "main", "render_local"]

DEFAULT_STORE = Path(".forja-local")


class ManifestError(Exception):
    """The YAML file holds no usable TrainingJob."""


def load_training_job(path: Path, name: str | None = None) -> dict[str, Any]:
    """The first TrainingJob document in ``path`` (or the one called ``name``)."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "TrainingJob"]
    if name is not None:
        jobs = [d for d in jobs if d.get("metadata", {}).get("name") == name]
    if not jobs:
        what = f"TrainingJob named {name!r}" if name else "TrainingJob"
        raise ManifestError(f"{path} holds no {what}")
    job: dict[str, Any] = jobs[0]
    return job


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def render_local(
    job: dict[str, Any],
    store: Path,
    *,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
) -> RenderedSpec:
    """What the operator would hand the pod, with URIs into the local directory store."""
    meta = job.get("metadata") or {}
    name = str(meta.get("name") or "local-job")
    root = (store / name).resolve()
    checkpoints = root / "checkpoints"
    resume_from = None
    if resume and (checkpoints / LAST_CHECKPOINT).is_file():
        resume_from = f"file://{checkpoints / LAST_CHECKPOINT}"
    return RenderedSpec(
        name=name,
        namespace=str(meta.get("namespace") or "local"),
        attempt=0,
        spec=dict(job.get("spec") or {}),
        overrides=dict(overrides or {}),
        checkpoint_uri=f"file://{checkpoints}",
        artifact_uri=f"file://{root / 'artifacts'}",
        resume_from=resume_from,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forja-train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a TrainingJob manifest locally")
    run.add_argument("manifest", type=Path, help="a YAML file with a TrainingJob")
    run.add_argument("--name", help="which TrainingJob when the file holds several")
    run.add_argument("--store", type=Path, default=DEFAULT_STORE, help="local store directory")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter, e.g. --set epochs=2 (repeatable)",
    )
    run.add_argument("--resume", action="store_true", help="continue from the store's last.pt")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        job = load_training_job(args.manifest, args.name)
    except ManifestError as exc:
        print(f"forja-train: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"forja-train: --set wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[key.strip()] = _parse_value(value)
    rendered = render_local(job, args.store, overrides=overrides, resume=args.resume)
    root = args.store.resolve() / rendered.name
    code, result = execute(
        rendered.to_json(),
        workdir=root / "work",
        progress=ProgressReporter.from_env(console=not args.quiet),
        result_path=root / "result.json",
    )
    print(json.dumps(json.loads(result.to_json()), indent=2))
    if result.artifact is not None:
        print(f"model manifest: {result.artifact.uri}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
