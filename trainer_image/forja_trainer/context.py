"""What a trainer gets to work with: config, device, local dirs, data access, progress.

The context is the trainer's only door to the outside world, so a trainer written
against it runs the same in a pod (s3:// store, pod annotation) and locally
(``forja-train run``: a directory store and a progress bar).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import parse_qsl, urlparse

import torch

import forja_storage as storage
from forja_api.contract import PretrainedRef, StopSignal
from forja_api.v1alpha1.trainingjob import DatasetFormat
from forja_trainer.config import BaseHyperparameters, JobConfig
from forja_trainer.distributed import WorldInfo
from forja_trainer.errors import IncompatiblePretrained, InvalidDataset
from forja_trainer.progress import ProgressReporter
from forja_trainer.retry import with_retries

__all__ = [
    "STORAGE_ERRORS",
    "GeneratedDataset",
    "StopSignal",
    "TrainingContext",
    "is_transient",
]

log = logging.getLogger(__name__)
H = TypeVar("H", bound=BaseHyperparameters)

DIRECTORY_FORMATS = frozenset(
    {
        DatasetFormat.YOLO,
        DatasetFormat.CROP_SEQUENCES,
        DatasetFormat.IMAGE_FOLDER,
        DatasetFormat.IMAGE_PAIRS,
    }
)
"""Layouts that are a directory tree; a single file can never be one of them."""

STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    storage.StorageError,
    ConnectionError,
    TimeoutError,
)
"""Store failures; :func:`is_transient` says which of them are worth retrying."""


@dataclass(frozen=True)
class GeneratedDataset:
    """``generated://<kind>?key=value``: a small synthetic set the trainer makes itself."""

    kind: str
    params: dict[str, str]

    def int_param(self, key: str, default: int, *, lo: int = 1, hi: int = 100_000) -> int:
        raw = self.params.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = lo - 1
        if not lo <= value <= hi:
            raise InvalidDataset(
                f"generated://{self.kind}: {key} must be an integer in [{lo}, {hi}], got {raw!r}",
                field="spec.dataset.uri",
            )
        return value


@dataclass
class TrainingContext(Generic[H]):
    config: JobConfig[H]
    device: torch.device
    workdir: Path
    progress: ProgressReporter = field(default_factory=ProgressReporter)
    stop: StopSignal = field(default_factory=StopSignal)
    cache_dir: Path | None = None
    pretrained_loaded: PretrainedRef | None = None
    """Set by :meth:`fetch_pretrained`: what was read, for the Result and the lineage."""
    world: WorldInfo = field(default_factory=WorldInfo)
    """This process's rank in a multi-worker attempt (a world of one otherwise)."""

    def __post_init__(self) -> None:
        for sub in ("data", "checkpoints", "artifacts"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        if self.cache_dir is None:
            self.cache_dir = self.workdir / "cache"

    @property
    def hp(self) -> H:
        return self.config.hyperparameters

    @property
    def seed(self) -> int:
        return self.config.hyperparameters.seed

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.workdir / "checkpoints"

    @property
    def artifact_dir(self) -> Path:
        return self.workdir / "artifacts"

    # --- data ---------------------------------------------------------------------

    def generated_dataset(self) -> GeneratedDataset | None:
        """The synthetic set the URI asks for, or None for a real dataset."""
        uri = self.config.dataset.uri
        if not uri.startswith("generated://"):
            return None
        parsed = urlparse(uri)
        kind = (parsed.netloc + parsed.path).strip("/")
        return GeneratedDataset(kind=kind, params=dict(parse_qsl(parsed.query)))

    def fetch_dataset(self) -> Path:
        """A local directory (or file) holding the dataset: read in place for file:// and
        pvc://, downloaded once into the work dir for s3://."""
        uri = self.config.dataset.uri
        try:
            local = storage.local_path(uri)
            if local is not None:
                if not local.exists():
                    raise storage.ObjectNotFound(f"no file or directory at {local}", uri)
            else:
                target = self.data_dir / "dataset"
                local = with_retries(
                    lambda: storage.download(uri, target),
                    what=f"downloading {uri}",
                    errors=STORAGE_ERRORS,
                    retry_if=is_transient,
                    attempts=self.hp.max_recoverable_retries + 1,
                )
        except storage.ObjectNotFound as exc:
            raise InvalidDataset(f"dataset not found at {uri}", field="spec.dataset.uri") from exc
        except storage.StorageError as exc:
            if is_transient(exc):
                raise  # the store is unwell: worth another attempt
            raise InvalidDataset(f"cannot read {uri}: {exc}", field="spec.dataset.uri") from exc
        fmt = self.config.dataset.format
        if fmt in DIRECTORY_FORMATS and not local.is_dir():
            raise InvalidDataset(
                f"format {fmt.value} is a directory layout, but {uri} is a single file",
                field="spec.dataset.uri",
            )
        return local

    def fetch_pretrained(self) -> Path:
        """The pretrained weights file, verified against spec.pretrained.sha256 and cached."""
        pretrained = self.config.pretrained
        if pretrained is None:
            raise IncompatiblePretrained(
                "no pretrained weights configured", field="spec.pretrained"
            )
        assert self.cache_dir is not None
        cache_dir = self.cache_dir
        try:
            path, digest = with_retries(
                lambda: storage.fetch_with_digest(pretrained.uri, pretrained.sha256, cache_dir),
                what=f"fetching {pretrained.uri}",
                errors=STORAGE_ERRORS,
                retry_if=is_transient,
                attempts=self.hp.max_recoverable_retries + 1,
            )
        except storage.ChecksumMismatch as exc:
            raise IncompatiblePretrained(str(exc), field="spec.pretrained.sha256") from exc
        except (storage.ObjectNotFound, storage.InvalidUri) as exc:
            raise IncompatiblePretrained(str(exc), field="spec.pretrained.uri") from exc
        if pretrained.sha256 is None:
            log.warning(
                "spec.pretrained.sha256 is unset: loaded %s with sha256 %s (pin it to refuse "
                "any other file)",
                pretrained.uri,
                digest,
            )
        self.pretrained_loaded = PretrainedRef(uri=pretrained.uri, sha256=digest)
        return path


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: not a missing object, a bad URI, a digest mismatch or a 4xx.

    The store's own answer to a bad request (400, 403, ...) is the same the next time;
    only 408 (timeout) and 429 (slow down) may change.
    """
    if isinstance(exc, storage.ObjectNotFound | storage.ChecksumMismatch | storage.InvalidUri):
        return False
    status = _http_status(exc)
    return status is None or not 400 <= status < 500 or status in (408, 429)


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of the store's answer behind ``exc`` (botocore's ClientError)."""
    cause: BaseException | None = exc
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
        cause = cause.__cause__
    return None
