"""One error vocabulary for every forja pod: the contract's PodError, its reasons and codes."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest

from forja_api import conditions as c
from forja_api import contract
from forja_storage.verify import verify


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (contract.InvalidConfig, 2, c.REASON_INVALID_CONFIG),
        (contract.InvalidDataset, 3, c.REASON_INVALID_DATASET),
        (contract.GpuUnavailable, 4, c.REASON_GPU_UNAVAILABLE),
        (contract.IncompatiblePretrained, 5, c.REASON_INCOMPATIBLE_PRETRAINED),
        (contract.OutOfMemory, 75, c.REASON_OUT_OF_MEMORY),
    ],
)
def test_each_error_carries_the_code_and_reason_the_operator_reads(error, code, reason):
    exc = error("no images under s3://data/set", field="dataset.uri")
    assert isinstance(exc, contract.PodError)
    assert (exc.exit_code, exc.reason, str(exc)) == (
        code,
        reason,
        "dataset.uri: no images under s3://data/set",
    )
    if contract.is_permanent_exit(code):
        assert contract.PERMANENT_REASONS[code] == reason


def test_terminated_exits_128_plus_the_signal():
    assert contract.Terminated().exit_code == 143
    assert contract.Terminated(signum=signal.SIGINT).exit_code == 130
    assert "SIGTERM before step 2" in str(contract.Terminated("SIGTERM before step 2"))


def test_the_pytorch_trainers_errors_are_the_contracts():
    from forja_trainer import errors as torch_errors

    assert torch_errors.InvalidDataset is contract.InvalidDataset
    assert torch_errors.Terminated is contract.Terminated


def test_stop_signal_sets_its_event():
    stop = contract.StopSignal()
    assert not stop.requested and not stop.event.is_set()
    stop.request(signal.SIGTERM)
    assert stop.requested and stop.event.is_set() and stop.signum == signal.SIGTERM


def test_termination_message_goes_where_the_env_says(tmp_path, monkeypatch):
    target = tmp_path / "term" / "log"
    monkeypatch.setenv(contract.TERMINATION_PATH_ENV, str(target))
    result = contract.Result(ok=False, reason=c.REASON_INVALID_CONFIG, message="epochs: < 1")
    assert contract.write_termination_message(result) == target
    assert contract.Result.from_termination_message(target.read_text()) == result


def test_verify_reports_through_the_same_errors(tmp_path: Path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    ok = verify(f"file://{model}", digest)
    assert (ok.code, ok.reason) == (0, c.REASON_CHECKSUM_MATCH)
    bad = verify(f"file://{model}", "0" * 64)
    assert (bad.code, bad.reason) == (65, c.REASON_CHECKSUM_MISMATCH)
    assert "expected " + "0" * 64 in bad.message
    gone = verify(f"file://{tmp_path}/missing.onnx", digest)
    assert (gone.code, gone.reason) == (66, c.REASON_ARTIFACT_NOT_FOUND)
