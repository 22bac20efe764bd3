"""A Ready version's benchmark: the pod it gets, the figures read back into status, and
failures that are recorded, bounded and never touch Ready."""

from datetime import timedelta

import pytest

from forja_api import benchmark as b
from forja_api import conditions as c
from forja_operator.builders.benchmark import benchmark_pod_name, render_benchmark_pod
from forja_operator.builders.common import RESTRICTED_CONTAINER_SECURITY
from forja_operator.builders.modelversion import verify_pod_name
from forja_operator.config import ArtifactStore, BenchmarkConfig, OperatorConfig
from forja_operator.status.modelversion import plan_modelversion

from .test_operator_modelversion_status import NOW, SHA, mv, verify_pod

URI = "s3://b/model.onnx"
POD = benchmark_pod_name("m-v1.0.0", URI, SHA)
CONFIG = OperatorConfig(
    server_image="s:1",
    artifact_store=ArtifactStore(uri="s3://forja", endpoint="http://minio:9000",
                                 credentials_secret="store"),
)
REPORT = b.BenchmarkReport(
    ok=True, runtime="onnxruntime", peak_memory_mib=88.5,
    figures=b.Figures(p50_ms=1.25, p99_ms=3.5, throughput=900.0, batch_size=8, requests=50,
                      load_seconds=0.4),
)


def ready():
    """A version as the verify pod left it: Ready, verified."""
    body = mv()
    p = plan_modelversion(body, [], NOW)
    body["status"] = p.status.to_wire()
    p = plan_modelversion(body, [verify_pod(body, 0)], NOW)
    assert p.status.phase == "Ready" and not p.create_benchmark_pod
    body["status"] = p.status.to_wire()
    return body


def bench_pod(body, code, message, phase=None, deleting=False):
    meta = {"name": POD, "namespace": "ns", "ownerReferences": [{
        "kind": "ModelVersion", "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"phase": phase or ("Succeeded" if code == 0 else "Failed")}
    if code is not None:
        status["containerStatuses"] = [{"image": "s:1", "imageID": "s@sha256:abc", "state": {
            "terminated": {"exitCode": code, "message": message}}}]
    return {"metadata": meta, "spec": {"nodeName": "node-a", "containers": [{"image": "s:1"}]},
            "status": status}


def cond(status, ctype=c.BENCHMARKED):
    return next(x for x in status.conditions if x.type == ctype)


def test_ready_plans_one_benchmark_pod_then_records_the_figures():
    body = ready()
    p = plan_modelversion(body, [], NOW)
    assert p.create_benchmark_pod and not p.create_verify_pod
    assert p.status.benchmark.state == "Running" and p.status.benchmark.sha256 == SHA
    assert cond(p.status).status == "Unknown"
    body["status"] = p.status.to_wire()
    running = bench_pod(body, None, "", phase="Running")
    p = plan_modelversion(body, [running], NOW)
    assert not p.create_benchmark_pod and POD not in p.delete_pods
    p = plan_modelversion(body, [bench_pod(body, 0, REPORT.to_json())], NOW)
    bench = p.status.benchmark
    assert (bench.state, bench.p50_ms, bench.p99_ms, bench.throughput) == (
        "Succeeded", 1.25, 3.5, 900.0)
    assert (bench.batch_size, bench.load_seconds, bench.peak_memory_mib) == (8, 0.4, 88.5)
    assert (bench.node, bench.image, bench.runtime) == ("node-a", "s@sha256:abc", "onnxruntime")
    assert bench.completed_at == "2026-01-01T00:00:00Z"
    assert cond(p.status).status == "True"
    assert cond(p.status).reason == c.REASON_BENCHMARK_SUCCEEDED
    assert p.delete_pods == [POD], "cleaned up once read"
    wire = p.status.to_wire()["benchmark"]
    assert wire["p50Ms"] == 1.25 and wire["throughput"] == 900.0  # the printer columns' paths
    body["status"] = p.status.to_wire()
    p = plan_modelversion(body, [], NOW + timedelta(hours=1))
    assert not p.create_benchmark_pod, "once per (uri, sha256)"
    assert p.status.phase == "Ready"


def test_a_crashed_benchmark_is_retried_bounded_and_never_touches_ready():
    body = ready()
    config = BenchmarkConfig(max_attempts=2)
    for attempt in (1, 2):
        p = plan_modelversion(body, [], NOW + timedelta(minutes=attempt), config)
        assert p.create_benchmark_pod, attempt
        body["status"] = p.status.to_wire()
        crashed = bench_pod(body, 1, "Traceback: boom")
        p = plan_modelversion(body, [crashed], NOW + timedelta(minutes=attempt), config)
        assert p.status.phase == "Ready" and cond(p.status, c.READY).status == "True"
        assert p.delete_pods == [POD]
        body["status"] = p.status.to_wire()
        if attempt == 1:
            assert p.status.benchmark.state == "Retrying" and p.retry_after == 10.0
            assert cond(p.status).status == "Unknown"
            soon = plan_modelversion(body, [], NOW + timedelta(minutes=1, seconds=3), config)
            assert not soon.create_benchmark_pod and soon.retry_after == pytest.approx(7.0)
    bench = p.status.benchmark
    assert bench.state == "Failed" and bench.failures == 2
    assert "boom" in bench.message and "2 benchmark pods failed" in bench.message
    assert cond(p.status).status == "False" and cond(p.status).reason == c.REASON_BENCHMARK_FAILED
    assert any(ev.type == "Warning" for ev in p.events)
    later = plan_modelversion(body, [], NOW + timedelta(days=1), config)
    assert not later.create_benchmark_pod and later.retry_after is None


def test_an_unsupported_model_fails_at_once_with_its_reason():
    body = ready()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    report = b.BenchmarkReport(ok=False, reason="Unsupported", message="format x: no runtime")
    p = plan_modelversion(body, [bench_pod(body, b.EXIT_UNSUPPORTED, report.to_json())], NOW)
    assert p.status.benchmark.state == "Failed" and p.status.benchmark.failures == 1
    assert cond(p.status).reason == c.REASON_BENCHMARK_UNSUPPORTED
    assert "no runtime" in p.status.benchmark.message
    assert p.status.phase == "Ready"


def test_a_deadline_without_a_report_is_a_failure_naming_the_pod_reason():
    body = ready()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    pod = bench_pod(body, None, "", phase="Failed")
    pod["status"]["reason"] = "DeadlineExceeded"
    p = plan_modelversion(body, [pod], NOW)
    assert p.status.benchmark.state == "Retrying"
    assert "DeadlineExceeded" in p.status.benchmark.message


def test_a_pod_being_deleted_is_not_counted_twice():
    body = ready()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    body["status"] = plan_modelversion(body, [bench_pod(body, 1, "x")], NOW).status.to_wire()
    p = plan_modelversion(body, [bench_pod(body, 1, "x", deleting=True)], NOW)
    assert p.status.benchmark.failures == 1 and not p.create_benchmark_pod


@pytest.mark.parametrize("where", ["spec", "operator"])
def test_disabled_means_no_pod_and_no_status(where):
    body = ready()
    config = BenchmarkConfig()
    if where == "spec":
        body["spec"]["benchmark"] = {"enabled": False}
    else:
        config = BenchmarkConfig(enabled=False)
    p = plan_modelversion(body, [], NOW, config)
    assert not p.create_benchmark_pod and p.status.benchmark is None
    assert all(x.type != c.BENCHMARKED for x in p.status.conditions)
    # Turned off while one runs: the pod goes.
    running = bench_pod(body, None, "", phase="Running")
    assert plan_modelversion(body, [running], NOW, config).delete_pods == [POD]


def test_a_pipeline_version_is_recorded_as_unsupported_without_a_pod():
    body = ready()
    body["spec"]["format"] = "pipeline"
    p = plan_modelversion(body, [], NOW)
    assert not p.create_benchmark_pod
    assert p.status.benchmark.state == "Failed"
    assert cond(p.status).reason == c.REASON_BENCHMARK_UNSUPPORTED
    assert "stage" in p.status.benchmark.message


def test_no_benchmark_before_ready_and_its_pod_goes_if_verification_restarts():
    body = mv()
    p = plan_modelversion(body, [], NOW)
    assert p.create_verify_pod and not p.create_benchmark_pod
    body["status"] = p.status.to_wire()
    stray = bench_pod(body, None, "", phase="Running")
    p = plan_modelversion(body, [stray], NOW)
    assert POD in p.delete_pods


def test_benchmark_pod_is_restricted_and_reads_credentials_by_reference():
    body = mv()
    body["spec"]["task"] = "classification"
    pod = render_benchmark_pod(body, CONFIG)
    assert pod["metadata"]["name"] == POD != verify_pod_name("m-v1.0.0", URI, SHA)
    assert len(POD) <= 63
    assert pod["metadata"]["labels"]["forja.dev/version"] == "m-v1.0.0"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["activeDeadlineSeconds"] == 300
    (ctr,) = spec["containers"]
    assert ctr["image"] == "s:1"
    assert ctr["command"] == ["python", "-m", "forja_server.benchmark", URI, SHA, "onnx",
                              "classification"]
    assert ctr["securityContext"] == RESTRICTED_CONTAINER_SECURITY
    env = {e["name"]: e for e in ctr["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "store", "key": "secretKey"}}
    assert "value" not in env["AWS_ACCESS_KEY_ID"]
    assert env[b.BENCH_REQUESTS_ENV]["value"] == "50" and env[b.BENCH_BATCH_ENV]["value"] == "8"
    assert env["FORJA_THREADS"]["value"] == "1"
    assert ctr["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
    long = mv(name="m" * 60 + "-v1.0.0")
    assert len(render_benchmark_pod(long, CONFIG)["metadata"]["name"]) <= 63
