"""One small API over the places forja keeps data: S3 (MinIO), volumes and local paths.

Trainers read datasets and pretrained weights and write checkpoints and artifacts
through these functions; the server reads artifacts the same way. A URI names the
place:

* ``s3://bucket/key`` - any S3 API (MinIO included). The endpoint comes from
  ``FORJA_S3_ENDPOINT`` (``http://host:port``; a bare ``host:port`` means http) and the
  credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (a Secret in
  pods, never inline). boto3 is imported only when an s3 URI is used.
* ``file:///abs/path`` - a local path (absolute).
* ``pvc://claim/path`` - a PersistentVolumeClaim mounted in pods at
  ``/mnt/forja/pvc/<claim>``; ``FORJA_PVC_ROOT`` moves that root for local runs.

A URI may name one object or a prefix (a "directory"): :func:`download` and
:func:`upload` copy a whole tree when given one.

A package of its own, apart from ``forja_api`` (the types and the contract): the
trainer and server images copy it, the operator image does not (the operator never
touches the store). Beside this client: :mod:`forja_storage.checkpoints` (which
checkpoint an attempt may load, proved by its sha256) and :mod:`forja_storage.verify`
(the verify pod's program: ``python -m forja_storage.verify URI SHA256``).

Exceptions::

    StorageError          base: anything the store could not do (often transient)
    +-- InvalidUri        the URI itself is malformed or of an unknown scheme, or an
    |                     object key under a prefix would leave the destination
    +-- ObjectNotFound    nothing at that URI
    +-- ChecksumMismatch  the bytes are not the ones the caller expected
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = [
    "DEFAULT_PVC_ROOT",
    "PVC_ROOT_ENV",
    "S3_ENDPOINT_ENV",
    "SCHEMES",
    "ChecksumMismatch",
    "InvalidUri",
    "ObjectNotFound",
    "StorageError",
    "delete",
    "download",
    "exists",
    "fetch_verified",
    "fetch_with_digest",
    "join",
    "list_uris",
    "local_path",
    "read_bytes",
    "read_chunks",
    "sha256_file",
    "upload",
    "upload_bytes",
]

S3_ENDPOINT_ENV = "FORJA_S3_ENDPOINT"
PVC_ROOT_ENV = "FORJA_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/forja/pvc"
SCHEMES = ("s3", "file", "pvc")
_CHUNK = 1 << 20


class StorageError(Exception):
    """The store could not do what was asked. ``uri`` names the place."""

    def __init__(self, message: str, uri: str = "") -> None:
        super().__init__(message)
        self.uri = uri


class InvalidUri(StorageError):  # noqa: N818 - named for the reason it reports
    """The URI is malformed or uses a scheme forja does not know."""


class ObjectNotFound(StorageError):  # noqa: N818 - named for the reason it reports
    """Nothing exists at the URI."""


class ChecksumMismatch(StorageError):  # noqa: N818 - named for the reason it reports
    """The downloaded bytes do not hash to the expected sha256."""

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch for {uri}: expected {expected}, got {actual}", uri)
        self.expected = expected
        self.actual = actual


# --- URIs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Location:
    scheme: str
    bucket: str  # s3 only
    key: str  # s3 only: the object key or prefix, no leading slash
    path: Path | None  # file and pvc: the local path


_UNSAFE_SEGMENTS = ("", ".", "..")


def _unsafe_segment(key: str) -> str | None:
    """The first ``.``/``..``/empty segment of a key (a trailing ``/`` is a prefix mark)."""
    parts = key.removesuffix("/").split("/")
    return next((p for p in parts if p in _UNSAFE_SEGMENTS), None)


def _parse(uri: str) -> _Location:
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme == "s3":
        if not parsed.netloc:
            raise InvalidUri(f"s3 URI needs a bucket: {uri!r}", uri)
        key = unquote(parsed.path).lstrip("/")
        # S3 keys are opaque, but forja maps them onto paths (downloads, the job's
        # prefix): '..' or '.' would name another job's objects or a place outside.
        if key and _unsafe_segment(key) in (".", ".."):
            raise InvalidUri(f"s3 URI may not hold '.' or '..' segments: {uri!r}", uri)
        return _Location("s3", parsed.netloc, key, None)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidUri(f"file URI must be file:///absolute/path, got {uri!r}", uri)
        path = unquote(parsed.path)
        if not path.startswith("/"):
            raise InvalidUri(f"file URI must hold an absolute path, got {uri!r}", uri)
        return _Location("file", "", "", Path(path))
    if scheme == "pvc":
        if not parsed.netloc:
            raise InvalidUri(f"pvc URI needs a claim name: {uri!r}", uri)
        root = Path(os.environ.get(PVC_ROOT_ENV) or DEFAULT_PVC_ROOT)
        rel = unquote(parsed.path).lstrip("/")
        if ".." in Path(rel).parts:
            raise InvalidUri(f"pvc URI may not leave its claim: {uri!r}", uri)
        return _Location("pvc", "", "", root / parsed.netloc / rel)
    raise InvalidUri(
        f"unsupported URI scheme {scheme or '(none)'!r} in {uri!r}; expected one of "
        + ", ".join(f"{s}://" for s in SCHEMES),
        uri,
    )


def join(uri: str, *parts: str) -> str:
    """Append path parts to a URI with exactly one ``/`` between each."""
    out = uri.rstrip("/")
    for part in parts:
        piece = part.strip("/")
        if piece:
            out = f"{out}/{piece}"
    return out


def local_path(uri: str) -> Path | None:
    """The local path behind a file:// or pvc:// URI (None for s3://): read in place."""
    loc = _parse(uri)
    return loc.path


# --- hashing --------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- local files (file:// and pvc://) -------------------------------------------------


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy so that a reader never sees a half-written file (checkpoints are read on resume)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write(data: bytes, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if not name.startswith("."):  # skip our own half-written temporaries
                yield Path(dirpath) / name


# --- S3 -------------------------------------------------------------------------------

_clients: dict[tuple[str, str, str], Any] = {}
_clients_lock = threading.Lock()


def _endpoint() -> str | None:
    endpoint = os.environ.get(S3_ENDPOINT_ENV, "").strip()
    if not endpoint:
        return None
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return endpoint


def _s3() -> Any:
    """A boto3 client for the current endpoint and credentials (cached per pair)."""
    endpoint = _endpoint() or ""
    access = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    key = (endpoint, access, hashlib.sha256(secret.encode()).hexdigest())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            try:
                import boto3  # noqa: PLC0415 - lazy: the operator image has no boto3
                from botocore.config import Config  # noqa: PLC0415
            except ImportError as exc:  # pragma: no cover - depends on the image
                raise StorageError("s3:// needs boto3 (install forja[storage])") from exc
            # The credentials of the key, given explicitly: boto3's default session
            # resolves them from the environment once and keeps them, so a client made
            # later for another pair would sign with the first pair.
            explicit = ({"aws_access_key_id": access, "aws_secret_access_key": secret}
                        if access and secret else {})
            client = boto3.client(
                "s3",
                endpoint_url=endpoint or None,
                **explicit,
                region_name=os.environ.get("AWS_REGION", "us-east-1"),
                config=Config(
                    # MinIO serves buckets by path, not by virtual host.
                    s3={"addressing_style": "path"},
                    signature_version="s3v4",
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                ),
            )
            _clients[key] = client
    return client


def _s3_error(exc: Exception, uri: str) -> StorageError:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            return ObjectNotFound(f"no object at {uri} ({code})", uri)
        return StorageError(f"s3 request for {uri} failed: {code}: {exc}", uri)
    return StorageError(f"s3 request for {uri} failed: {exc}", uri)


def _s3_call(uri: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        return fn(*args, **kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, uri) from exc


def _s3_prefix(key: str) -> str:
    return key if not key or key.endswith("/") else key + "/"


def _s3_keys(loc: _Location, uri: str) -> list[str]:
    client = _s3()
    prefix = _s3_prefix(loc.key)
    keys: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    pages = _s3_call(uri, lambda: list(paginator.paginate(Bucket=loc.bucket, Prefix=prefix)))
    for page in pages:
        keys.extend(str(obj["Key"]) for obj in page.get("Contents", []))
    return sorted(k for k in keys if not k.endswith("/"))


def _s3_object_exists(loc: _Location, uri: str) -> bool:
    if not loc.key or loc.key.endswith("/"):
        return False
    try:
        _s3_call(uri, _s3().head_object, Bucket=loc.bucket, Key=loc.key)
    except ObjectNotFound:
        return False
    return True


# --- the API --------------------------------------------------------------------------


def exists(uri: str) -> bool:
    """True when an object, or a non-empty prefix / directory, is at ``uri``."""
    loc = _parse(uri)
    if loc.path is not None:
        return loc.path.exists()
    return _s3_object_exists(loc, uri) or bool(_s3_keys(loc, uri))


def list_uris(prefix_uri: str) -> list[str]:
    """Every object under a prefix (recursively), as full URIs, sorted.

    The prefix is a directory: ``s3://b/ckpt`` lists ``s3://b/ckpt/...`` and not
    ``s3://b/ckpt-old/...``. A missing prefix lists nothing.
    """
    loc = _parse(prefix_uri)
    base = prefix_uri.rstrip("/")
    if loc.path is not None:
        if loc.path.is_file():
            return [base]
        if not loc.path.is_dir():
            return []
        return sorted(join(base, p.relative_to(loc.path).as_posix()) for p in _walk_files(loc.path))
    return [f"s3://{loc.bucket}/{key}" for key in _s3_keys(loc, prefix_uri)]


def read_bytes(uri: str) -> bytes:
    loc = _parse(uri)
    if loc.path is not None:
        if not loc.path.is_file():
            raise ObjectNotFound(f"no file at {uri} ({loc.path})", uri)
        return loc.path.read_bytes()
    body = _s3_call(uri, _s3().get_object, Bucket=loc.bucket, Key=loc.key)["Body"]
    try:
        return bytes(_s3_call(uri, body.read))
    finally:
        body.close()


def read_chunks(uri: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
    """The object's bytes as a stream of chunks: memory stays flat whatever its size."""
    loc = _parse(uri)
    if loc.path is not None:
        if not loc.path.is_file():
            raise ObjectNotFound(f"no file at {uri} ({loc.path})", uri)
        try:
            with loc.path.open("rb") as fh:
                while chunk := fh.read(chunk_size):
                    yield chunk
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc}", uri) from exc
        return
    body = _s3_call(uri, _s3().get_object, Bucket=loc.bucket, Key=loc.key)["Body"]
    try:
        stream = body.iter_chunks(chunk_size)
        while chunk := _s3_call(uri, next, stream, b""):
            yield chunk
    except StorageError:
        raise
    except Exception as exc:  # urllib3's protocol errors mid-body have no common base
        raise StorageError(f"reading {uri} broke off: {exc}", uri) from exc
    finally:
        body.close()


def upload_bytes(data: bytes, uri: str) -> None:
    loc = _parse(uri)
    if loc.path is not None:
        try:
            _atomic_write(data, loc.path)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc}", uri) from exc
        return
    _s3_call(uri, _s3().put_object, Bucket=loc.bucket, Key=loc.key, Body=data)


def upload(src: Path, uri: str) -> None:
    """Copy a file to ``uri``, or a directory's files under the prefix ``uri``."""
    src = Path(src)
    if src.is_dir():
        for path in sorted(_walk_files(src)):
            upload(path, join(uri, path.relative_to(src).as_posix()))
        return
    if not src.is_file():
        raise StorageError(f"nothing to upload at {src}", uri)
    loc = _parse(uri)
    if loc.path is not None:
        try:
            _atomic_copy(src, loc.path)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc}", uri) from exc
        return
    _s3_call(uri, _s3().upload_file, str(src), loc.bucket, loc.key)


def delete(uri: str) -> None:
    """Remove one object (rotating checkpoints); a missing object is not an error."""
    loc = _parse(uri)
    if loc.path is not None:
        try:
            loc.path.unlink(missing_ok=True)
        except IsADirectoryError as exc:
            raise StorageError(f"{uri} is a directory; delete removes one object", uri) from exc
        except OSError as exc:
            raise StorageError(f"cannot delete {uri}: {exc}", uri) from exc
        return
    _s3_call(uri, _s3().delete_object, Bucket=loc.bucket, Key=loc.key)


def download(uri: str, dest: Path) -> Path:
    """Copy what is at ``uri`` to ``dest`` and return the local path.

    One object: written to ``dest`` (or into it, keeping its name, when ``dest`` is
    an existing directory). A prefix / directory: its files are written under
    ``dest`` keeping their relative paths, and ``dest`` is returned.
    Raises :class:`ObjectNotFound` when nothing is there.
    """
    dest = Path(dest)
    loc = _parse(uri)
    if loc.path is not None:
        src = loc.path
        if src.is_file():
            target = dest / src.name if dest.is_dir() else dest
            _atomic_copy(src, target)
            return target
        if src.is_dir():
            for path in _walk_files(src):
                _atomic_copy(path, dest / path.relative_to(src))
            dest.mkdir(parents=True, exist_ok=True)
            return dest
        raise ObjectNotFound(f"no file or directory at {uri} ({src})", uri)
    client = _s3()
    if _s3_object_exists(loc, uri):
        target = dest / Path(loc.key).name if dest.is_dir() else dest
        _s3_download_file(client, loc.bucket, loc.key, target, uri)
        return target
    keys = _s3_keys(loc, uri)
    if not keys:
        raise ObjectNotFound(f"no object or prefix at {uri}", uri)
    prefix = _s3_prefix(loc.key)
    targets = [(key, _tree_target(dest, key[len(prefix) :], uri)) for key in keys]
    for key, target in targets:
        _s3_download_file(client, loc.bucket, key, target, uri)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def _tree_target(dest: Path, rel: str, uri: str) -> Path:
    """Where an object under a prefix lands; refused when its key would leave ``dest``.

    Checked for every key before the first byte is written, so a hostile listing
    (keys like ``a/../../x`` that S3 allows) leaves nothing behind.
    """
    bad = _unsafe_segment(rel)
    if bad is not None:
        what = f"a {bad!r}" if bad else "an empty"
        raise InvalidUri(
            f"{uri}: object key {rel!r} under the prefix has {what} segment; refusing to "
            f"download the prefix (it could write outside {dest})",
            uri,
        )
    return dest / rel


def _s3_download_file(client: Any, bucket: str, key: str, target: Path, uri: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        _s3_call(uri, client.download_file, bucket, key, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_verified(uri: str, sha256: str | None, cache_dir: Path) -> Path:
    """A local copy of ``uri`` whose sha256 is ``sha256``, downloaded once into a cache.

    The cache is keyed by digest, so a second call (or a second attempt of a job on
    the same node) reads no bytes from the store. A cached file is re-hashed before
    it is returned: a corrupted cache entry is replaced, never used. Raises
    :class:`ChecksumMismatch` when the downloaded bytes differ from ``sha256``
    (nothing is kept). With ``sha256=None`` the cache is keyed by the URI and the
    file is trusted as downloaded (callers should log its digest).
    """
    cache_dir = Path(cache_dir)
    name = Path(urlparse(uri).path).name or "object"
    if sha256 is not None:
        sha256 = sha256.lower()
        slot = cache_dir / "sha256" / sha256
    else:
        slot = cache_dir / "uri" / hashlib.sha256(uri.encode()).hexdigest()[:32]
    cached = slot / name
    if cached.is_file():
        if sha256 is None or sha256_file(cached) == sha256:
            return cached
        cached.unlink()
    slot.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=slot, prefix=".fetch-") as tmpdir:
        tmp = download(uri, Path(tmpdir) / name)
        if not tmp.is_file():
            raise StorageError(f"{uri} is a prefix, expected one object", uri)
        actual = sha256_file(tmp)
        if sha256 is not None and actual != sha256:
            raise ChecksumMismatch(uri, sha256, actual)
        os.replace(tmp, cached)
    return cached


def fetch_with_digest(uri: str, sha256: str | None, cache_dir: Path) -> tuple[Path, str]:
    """:func:`fetch_verified`, and the sha256 of the bytes returned: ``sha256`` itself
    when it was pinned, else computed from the file, so what was used can be recorded."""
    path = fetch_verified(uri, sha256, cache_dir)
    return path, sha256.lower() if sha256 is not None else sha256_file(path)
