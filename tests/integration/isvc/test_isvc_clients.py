"""The ecosystem's own clients against a served ModelVersion (issue 15, item 1).

KServe's Python client (``InferenceRESTClient``, ``InferenceGRPCClient``, protocol
v2) and Triton's (``tritonclient.http``, ``tritonclient.grpc``) call the real
``python -m forja_server`` behind an InferenceService, through the Service's
ClusterIP: server live/ready, model ready, metadata, and inference with JSON (typed
contents over gRPC) and binary tensors, requested outputs in binary, and one output
asked for by name. The model is a classifier trained by forja's own trainer, with a
``probabilities`` output added to its graph (clients_support.py); every answer is
compared with ONNX Runtime's on the same graph.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fixtures.cluster import Cluster, wait_for
from fixtures.real_cluster import on_real_nodes, restricted_namespaces

from .clients_support import (
    OUTPUTS,
    client_venv,
    expected_outputs,
    run_clients,
    train_classifier,
    with_probabilities,
)
from .isvc_support import Controller, Models
from .test_isvc_rollout import (  # noqa: F401 - fixtures, used by name
    controller,
    crds,
    create_isvc,
    models,
    ready_on,
    wait_status,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

cluster = on_real_nodes("server")
namespace = restricted_namespaces()

MODEL, VERSION = "shapes", "1.0.0"


@pytest.fixture(scope="module")
def venv() -> Path:
    """The clients' own venv (hack/client-venv.sh; cached, so seconds after the first)."""
    return client_venv()


@pytest.fixture
def served(cluster: Cluster, namespace: str, controller: Controller,  # noqa: F811
           models: Models) -> Iterator[tuple[str, str, np.ndarray, dict[str, Any]]]:  # noqa: F811
    model = with_probabilities(train_classifier(models.dir / "train"))
    models.create(MODEL, VERSION, artifact=model.manifest, fmt="torch-state-dict")
    create_isvc(namespace, MODEL, {"model": MODEL, "selector": {"version": VERSION}})
    wait_status(namespace, MODEL, ready_on(VERSION), 240, "real server Ready")
    ip = cluster.get_json("service", MODEL, "-n", namespace)["spec"]["clusterIP"]
    # The first connection may race the proxy learning the new Service's endpoints.
    wait_for(lambda: urllib.request.urlopen(f"http://{ip}/v2/health/ready", timeout=5).status
             == 200, timeout=30, message="the Service routing to the server")
    x = np.random.default_rng(0).random(model.input_shape, dtype=np.float32)
    yield ip, str(models.dir / "x.npy"), x, expected_outputs(model, x)


def _check_outputs(where: str, result: dict[str, Any], expected: dict[str, Any],
                   names: tuple[str, ...]) -> None:
    assert result["names"] == list(names), (where, result["names"])
    assert result["datatypes"] == ["FP32"] * len(names), where
    for n in names:
        got = np.asarray(result["outputs"][n], dtype=np.float32).reshape(expected[n].shape)
        np.testing.assert_allclose(got, expected[n], rtol=1e-5, atol=1e-6, err_msg=where)


@pytest.mark.parametrize("controller", ["real"], indirect=True)  # the real forja_server
def test_kserve_and_triton_clients_over_http_and_grpc(
        served: tuple[str, str, np.ndarray, dict[str, Any]], venv: Path) -> None:
    ip, x_path, x, expected = served
    np.save(x_path, x)
    results: dict[str, dict[str, Any]] = {}
    for project in ("kserve", "triton"):
        results.update(run_clients(venv, http=f"http://{ip}:80", grpc=f"{ip}:8081",
                                   model=MODEL, version=VERSION, x_path=Path(x_path),
                                   project=project))
    failed = {f"{client}.{call}": r["error"] for client, calls in results.items()
              for call, r in calls.items() if not r["ok"]}
    if failed:
        pytest.fail("client calls failed:\n" + "\n".join(f"  {k}: {v}" for k, v in failed.items()))
    print("\n" + "\n".join(f"{c}: {len(calls)} calls ok ({', '.join(calls)})"
                           for c, calls in results.items()))
    assert set(results) == {"kserve_rest", "kserve_grpc", "triton_http", "triton_grpc"}

    for client, calls in results.items():
        for call in ("live", "ready", "model_ready"):
            assert calls[call]["value"] is True, (client, call)
        meta = calls["metadata"]
        assert meta["name"] == MODEL and meta["versions"] == [VERSION], (client, meta)
        assert meta["inputs"][0]["name"] == "input", (client, meta)
        assert meta["inputs"][0]["datatype"] == "FP32", (client, meta)
        # Every infer call answers the graph's values; naming one output leaves the other out.
        for call, r in calls.items():
            if call.startswith("infer"):
                names = (OUTPUTS[1],) if "one_output" in call else OUTPUTS
                _check_outputs(f"{client}.{call}", r, expected, names)

    # Binary where asked, JSON where not: the client saw which (header or raw contents).
    kr, kg = results["kserve_rest"], results["kserve_grpc"]
    assert kr["infer_json"]["binary_response"] is False
    assert kr["infer_binary"]["binary_response"] is True
    assert kr["infer_one_output"]["binary_response"] is True
    assert kr["infer_one_output_json"]["binary_response"] is False
    assert kg["infer_json"]["raw_outputs"] == []
    assert kg["infer_binary"]["raw_outputs"] == list(OUTPUTS)
    assert kg["infer_binary"]["model_version"] == VERSION
    th, tg = results["triton_http"], results["triton_grpc"]
    assert th["infer_json"]["binary_outputs"] == []
    assert th["infer_binary"]["binary_outputs"] == list(OUTPUTS)
    # No outputs named: Triton's client asks binary_data_output for all of them.
    assert th["infer_default"]["binary_outputs"] == list(OUTPUTS)
    assert th["infer_one_output"]["binary_outputs"] == [OUTPUTS[1]]
    assert th["infer_one_output_json"]["binary_outputs"] == []
    for r in (th["infer_binary"], tg["infer_binary"]):
        assert r["model_version"] == VERSION and r["id"] == "req-1", r
    assert th["model_ready_version"]["value"] is True
    assert tg["model_ready_version"]["value"] is True
    assert th["server_metadata"]["extensions"] == ["binary_tensor_data"]
    assert tg["infer_binary"]["raw_outputs"] == list(OUTPUTS)
