"""forja_storage over local schemes (file://, pvc://); s3:// runs against real MinIO
in tests/integration/trainer/test_trainer_on_cluster.py (test_storage_over_minio)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import forja_storage as storage


def test_join_has_one_slash_between_parts() -> None:
    assert storage.join("s3://b/p/", "/a/", "b.pt") == "s3://b/p/a/b.pt"
    assert storage.join("file:///x", "") == "file:///x"


def test_file_roundtrip_and_listing(tmp_path: Path) -> None:
    base = f"file://{tmp_path}/store"
    storage.upload_bytes(b"hello", storage.join(base, "a", "x.txt"))
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00" * 10)
    storage.upload(src, storage.join(base, "b.bin"))
    assert storage.read_bytes(storage.join(base, "a", "x.txt")) == b"hello"
    assert storage.exists(base)
    assert not storage.exists(storage.join(base, "nope"))
    assert storage.list_uris(base) == [f"{base}/a/x.txt", f"{base}/b.bin"]
    assert storage.list_uris(storage.join(base, "missing")) == []


def test_download_tree_and_single_file(tmp_path: Path) -> None:
    base = f"file://{tmp_path}/store"
    storage.upload_bytes(b"1", storage.join(base, "d", "one"))
    storage.upload_bytes(b"2", storage.join(base, "d", "sub", "two"))
    out = storage.download(storage.join(base, "d"), tmp_path / "out")
    assert (out / "sub" / "two").read_bytes() == b"2"
    single = storage.download(storage.join(base, "d", "one"), tmp_path / "single.bin")
    assert single.read_bytes() == b"1"
    with pytest.raises(storage.ObjectNotFound):
        storage.download(storage.join(base, "absent"), tmp_path / "x")


def test_pvc_maps_under_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(storage.PVC_ROOT_ENV, str(tmp_path))
    storage.upload_bytes(b"v", "pvc://claim/models/m.pt")
    assert (tmp_path / "claim" / "models" / "m.pt").read_bytes() == b"v"
    assert storage.local_path("pvc://claim/models/m.pt") == tmp_path / "claim/models/m.pt"
    with pytest.raises(storage.InvalidUri, match="leave its claim"):
        storage.read_bytes("pvc://claim/../other/secret")


@pytest.mark.parametrize("uri", ["http://x/y", "file://relative/path", "s3:///nobucket", "x"])
def test_invalid_uris_name_the_uri(uri: str) -> None:
    with pytest.raises(storage.InvalidUri) as err:
        storage.exists(uri)
    assert err.value.uri == uri


def test_fetch_verified_caches_and_refuses_wrong_digest(tmp_path: Path) -> None:
    data = b"weights" * 100
    digest = hashlib.sha256(data).hexdigest()
    uri = f"file://{tmp_path}/store/w.pth"
    storage.upload_bytes(data, uri)
    cache = tmp_path / "cache"
    first = storage.fetch_verified(uri, digest, cache)
    assert first.read_bytes() == data and storage.sha256_file(first) == digest
    # served from the cache: the source can vanish
    (tmp_path / "store" / "w.pth").unlink()
    assert storage.fetch_verified(uri, digest, cache) == first
    # a corrupted cache entry is never returned
    first.write_bytes(b"tampered")
    with pytest.raises(storage.ObjectNotFound):
        storage.fetch_verified(uri, digest, cache)
    storage.upload_bytes(b"other bytes", uri)
    with pytest.raises(storage.ChecksumMismatch) as err:
        storage.fetch_verified(uri, digest, cache)
    assert err.value.expected == digest
    assert not any(p.name == "w.pth" for p in cache.rglob("*"))


def test_delete_is_idempotent(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/c/epoch-0001.pt"
    storage.upload_bytes(b"x", uri)
    storage.delete(uri)
    storage.delete(uri)
    assert not storage.exists(uri)


@pytest.mark.parametrize("uri", ["s3://bucket/../../x", "s3://bucket/a/../b", "s3://bucket/./a",
                                 "s3://bucket/a/%2E%2E/b"])
def test_s3_uris_with_dot_segments_are_refused_at_parse(uri: str) -> None:
    # InvalidUri is what the trainer reports as a permanent failure (no retries).
    with pytest.raises(storage.InvalidUri, match=r"'\.' or '\.\.' segments"):
        storage.read_bytes(uri)
    with pytest.raises(storage.InvalidUri):
        storage.download(uri, Path("/nonexistent-dest"))


class _ListingStore:
    """The few calls ``download`` makes, over a fixed listing: S3 itself allows keys
    like ``a/../../x`` (MinIO refuses to store them, so this cannot run against it)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.fetched: list[str] = []

    def head_object(self, **_: object) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "404"}}, "HeadObject")

    def get_paginator(self, _: str) -> _ListingStore:
        return self

    def paginate(self, **_: object) -> list[dict[str, object]]:
        return [{"Contents": [{"Key": k} for k in self.keys]}]

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        self.fetched.append(key)
        Path(filename).write_bytes(key.encode())


@pytest.mark.parametrize("bad", ["data/../../escape.txt", "data/./x", "data//x", "data/sub/.."])
def test_prefix_download_refuses_keys_that_leave_the_destination(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _ListingStore(["data/good.txt", bad])
    monkeypatch.setattr(storage, "_s3", lambda: store)
    dest = tmp_path / "work" / "dest"
    with pytest.raises(storage.InvalidUri, match="segment; refusing"):
        storage.download("s3://bucket/data", dest)
    assert store.fetched == []  # checked before the first byte: nothing half-written
    assert not (tmp_path / "work" / "escape.txt").exists()
    assert list(tmp_path.rglob("*.txt")) == []


def test_prefix_download_keeps_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    store = _ListingStore(["data/a.txt", "data/sub/b.txt", "data/sub/"])
    monkeypatch.setattr(storage, "_s3", lambda: store)
    out = storage.download("s3://bucket/data", tmp_path / "dest")
    assert (out / "sub" / "b.txt").read_bytes() == b"data/sub/b.txt"
    assert store.fetched == ["data/a.txt", "data/sub/b.txt"]
