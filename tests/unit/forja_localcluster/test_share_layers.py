"""share_layers links only what no container writes: the nodes' committed snapshots."""

import os
import subprocess
from pathlib import Path

from forja_localcluster import nodes

ROOT = "/s/nodes/forja-node-0/" + nodes.SNAPSHOTS


def _fake_ctr(listing: str, mounts: dict[str, str]):
    def ctr(node, *args, check=True, timeout=0):
        if args[:2] == ("snapshots", "ls"):
            return subprocess.CompletedProcess(args, 0, listing, "")
        out = mounts.get(args[-1])
        return subprocess.CompletedProcess(args, 0 if out is not None else 1, out or "", "")
    return ctr


def test_upper_work_and_bind_dirs_of_active_snapshots_are_left_out(monkeypatch):
    listing = ("KEY                 PARENT      KIND\n"
               "sha256:aaa                      Committed\n"
               "sha256:bbb          sha256:aaa  Committed\n"
               "c1                  sha256:bbb  Active\n"
               "sandbox-empty                   Active\n"
               "view1               sha256:aaa  View\n")
    mounts = {
        "c1": (f"mount -t overlay overlay /mnt -o index=off,workdir={ROOT}/7/work,"
               f"upperdir={ROOT}/7/fs,lowerdir={ROOT}/2/fs:{ROOT}/1/fs\n"),
        "sandbox-empty": f"mount -t bind {ROOT}/9/fs /mnt -o rbind,rw\n",
    }
    monkeypatch.setattr(nodes, "_ctr", _fake_ctr(listing, mounts))
    assert nodes._active_snapshot_ids(nodes.NodeSpec(0, Path("/s"))) == {"7", "9"}


def test_nothing_is_known_when_containerd_does_not_answer(monkeypatch):
    listing = "KEY PARENT KIND\nc1 sha256:bbb Active\n"
    monkeypatch.setattr(nodes, "_ctr", _fake_ctr(listing, {}))
    assert nodes._active_snapshot_ids(nodes.NodeSpec(0, Path("/s"))) is None


def test_identical_committed_files_of_two_nodes_become_one(tmp_path, monkeypatch):
    """The real hardlink: same content, mode and time -> one inode; an active upper
    directory with the same file keeps its own."""
    specs = [nodes.NodeSpec(i, tmp_path) for i in (0, 1)]
    payload = b"x" * 65536
    files = []
    for spec, snap in ((specs[0], "1"), (specs[1], "4"), (specs[1], "5")):
        layer = spec.dir / nodes.SNAPSHOTS / snap / "fs" / "lib"
        layer.mkdir(parents=True)
        (layer / "libbig.so").write_bytes(payload)
        files.append(layer / "libbig.so")
    for f in files:
        # as unpacked from one tar: the same modification time
        os.utime(f, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    monkeypatch.setattr(nodes, "_active_snapshot_ids",
                        lambda node: {"5"} if node.index == 1 else set())
    said: list[str] = []
    nodes.share_layers(specs, said.append)
    inodes = [f.stat().st_ino for f in files]
    assert inodes[0] == inodes[1] and inodes[2] != inodes[0]
    assert files[0].read_bytes() == payload
    assert said == ["layer files shared across 2 nodes: 64 KiB freed"], said
