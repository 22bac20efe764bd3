"""Ultralytics stays offline: a short real training run with the network blocked.

Every socket connection or DNS look-up to a non-loopback host is refused and
recorded; the run must succeed and the record must be empty.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from forja_trainer.trainers.yolo_detector import YoloHyperparameters, train_yolo
from forja_trainer.yolo.synthetic import make_yolo_dataset

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture()
def blocked_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
            attempts.append(("connect", address))
            raise OSError("network blocked by test")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK and host is not None:
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror("network blocked by test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(
        socket, "create_connection", lambda address, *a, **k: connect(socket.socket(), address)
    )
    return attempts


@pytest.mark.slow
def test_training_and_export_make_no_network_call(
    tmp_path: Path, yolo_config_dir: Path, blocked_network: list[Any]
) -> None:
    data = make_yolo_dataset(tmp_path / "ds", train=8, val=4, size=64)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "ultralytics-config").symlink_to(yolo_config_dir)
    outcome = train_yolo(data, workdir, YoloHyperparameters(epochs=1, imgsz=64, batch_size=4))
    assert blocked_network == []
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "0"
    from ultralytics.utils import SETTINGS

    assert SETTINGS["sync"] is False
    assert (Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf").stat().st_size > 0
    assert outcome.best.exists() and outcome.onnx is not None and outcome.onnx.exists()
