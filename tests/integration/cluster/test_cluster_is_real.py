"""The local cluster behaves like Kubernetes: real controllers, scheduler, admission,
RBAC, and kubelets whose containers (runc, from forja's server image) really run,
fail, get OOM-killed and signalled, with kube-proxy for Services."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from fixtures.cluster import Cluster, wait_for
from fixtures.real_cluster import on_real_nodes
from forja_operator.config import OperatorConfig

pytestmark = pytest.mark.cluster

JSON = dict[str, Any]
# Any image with a Python: the nodes hold forja's own, and pull nothing.
PYTHON_IMAGE = OperatorConfig().server_image
cluster = on_real_nodes("server")


def pod_manifest(name: str, code: str, **spec: Any) -> JSON:
    """A pod whose one container runs ``python -c code``."""
    container: JSON = {"name": "main", "image": PYTHON_IMAGE, "command": ["python", "-c", code]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


# Answers every GET with the pod's name, bound to the pod's own address.
WHO_AM_I_SERVER = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ['HOSTNAME'].encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ['POD_IP'], 8080), Handler).serve_forever()
"""


def http_deployment(name: str, replicas: int) -> JSON:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "web", "image": PYTHON_IMAGE,
                        "command": ["python", "-c", WHO_AM_I_SERVER],
                        "env": [{"name": "POD_IP",
                                 "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                           "periodSeconds": 1},
                    }],
                },
            },
        },
    }


def pod(cluster: Cluster, ns: str, name: str) -> JSON:
    result: JSON = cluster.get_json("pod", name, "-n", ns)
    return result


def finished(cluster: Cluster, ns: str, name: str) -> JSON | None:
    p = pod(cluster, ns, name)
    return p if p["status"].get("phase") in ("Succeeded", "Failed") else None


def test_two_replica_http_deployment_becomes_ready_with_endpoint_slices(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(http_deployment("web", 2), namespace)
    cluster.apply({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }, namespace)

    def ready() -> bool:
        d = cluster.get_json("deployment", "web", "-n", namespace)
        return d["status"].get("readyReplicas") == 2

    wait_for(ready, timeout=90, message="deployment web 2/2 ready")
    pods = cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    ips = sorted(p["status"]["podIP"] for p in pods)
    assert len(set(ips)) == 2

    def slice_addresses() -> list[str] | None:
        slices = cluster.get_json("endpointslices", "-n", namespace,
                                  "-l", "kubernetes.io/service-name=web")["items"]
        addresses = sorted(
            a for s in slices for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready") for a in e["addresses"]
        )
        return addresses if addresses == ips else None

    wait_for(slice_addresses, timeout=60, message="EndpointSlice with both pod IPs ready")
    by_ip = {p["status"]["podIP"]: p["metadata"]["name"] for p in pods}
    for ip, name in by_ip.items():  # each replica serves on its own address
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as response:
            assert response.read().decode() == name


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_service_cluster_ip_balances_over_ready_endpoints(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(http_deployment("web", 2), namespace)
    cluster.apply({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }, namespace)
    wait_for(lambda: cluster.get_json("deployment", "web", "-n", namespace)["status"]
             .get("readyReplicas") == 2, timeout=90, message="2/2 ready")
    names = {p["metadata"]["name"]
             for p in cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]}
    ip = cluster.get_json("service", "web", "-n", namespace)["spec"]["clusterIP"]

    def both_answer() -> bool:
        return {get_text(f"http://{ip}/") for _ in range(6)} == names

    wait_for(both_answer, timeout=30, message=f"both replicas answering on {ip}:80")
    # Inside pods, a Service made before them is in their environment (no cluster DNS).
    code = ("import os, urllib.request; open('/dev/termination-log', 'w').write(urllib.request"
            ".urlopen('http://%s/' % os.environ['WEB_SERVICE_HOST'], timeout=5).read().decode())")
    cluster.apply(pod_manifest("caller", code), namespace)
    p = wait_for(lambda: finished(cluster, namespace, "caller"), timeout=60, message="caller")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    assert terminated["message"] in names


def test_pod_exiting_3_is_failed_with_exit_code_and_termination_message(
    cluster: Cluster, namespace: str
) -> None:
    code = ("open('/dev/termination-log', 'w').write('model file missing'); "
            "raise SystemExit(3)")
    cluster.apply(pod_manifest("exit3", code), namespace)
    p = wait_for(lambda: finished(cluster, namespace, "exit3"), timeout=60, message="exit3 done")
    assert p["status"]["phase"] == "Failed"
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "model file missing"


def test_pod_over_its_memory_limit_is_oom_killed(cluster: Cluster, namespace: str) -> None:
    code = "import time; blocks = [bytearray(16 << 20) for _ in range(32)]; time.sleep(30)"
    manifest = pod_manifest("hog", code, container={
        "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}})
    cluster.apply(manifest, namespace)
    p = wait_for(lambda: finished(cluster, namespace, "hog"), timeout=60, message="hog killed")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137
    assert p["status"]["phase"] == "Failed"


def test_pod_asking_for_more_gpus_than_exist_stays_pending_unschedulable(
    cluster: Cluster, namespace: str
) -> None:
    gpus = str(cluster.info.gpus_per_node + 1)
    manifest = pod_manifest("greedy", "print('never runs')", container={
        "resources": {"limits": {"nvidia.com/gpu": gpus}}})
    cluster.apply(manifest, namespace)

    def unschedulable() -> JSON | None:
        conditions = pod(cluster, namespace, "greedy")["status"].get("conditions", [])
        return next((c for c in conditions if c["type"] == "PodScheduled"
                     and c.get("reason") == "Unschedulable"), None)

    condition = wait_for(unschedulable, timeout=60, message="PodScheduled=False Unschedulable")
    assert condition["status"] == "False"
    assert "nvidia.com/gpu" in condition["message"]
    p = pod(cluster, namespace, "greedy")
    assert p["status"]["phase"] == "Pending"
    assert not p["spec"].get("nodeName")


def test_pod_within_gpu_capacity_is_scheduled_and_runs(cluster: Cluster, namespace: str) -> None:
    manifest = pod_manifest("gpu-ok", "print('ok')", container={
        "resources": {"limits": {"nvidia.com/gpu": str(cluster.info.gpus_per_node)}}})
    cluster.apply(manifest, namespace)
    p = wait_for(lambda: finished(cluster, namespace, "gpu-ok"), timeout=60, message="gpu-ok")
    assert p["status"]["phase"] == "Succeeded"


def test_deleting_a_deployment_garbage_collects_its_pods(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(http_deployment("gc", 2), namespace)
    wait_for(lambda: len(cluster.get_json("pods", "-n", namespace, "-l", "app=gc")["items"]) == 2,
             timeout=60, message="2 pods")
    cluster.kubectl("delete", "deployment", "gc", "-n", namespace, "--wait=false")
    wait_for(lambda: not cluster.get_json("replicasets", "-n", namespace)["items"],
             timeout=60, message="replicaset collected")
    wait_for(lambda: not cluster.get_json("pods", "-n", namespace, "-l", "app=gc")["items"],
             timeout=60, message="pods collected and terminated")


def test_privileged_pod_is_refused_in_a_restricted_namespace(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("label", "namespace", namespace,
                    "pod-security.kubernetes.io/enforce=restricted")
    manifest = pod_manifest("root", "print(1)", container={
        "securityContext": {"privileged": True}})
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-",
                             input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr
    assert "privileged" in result.stderr
    assert cluster.kubectl("get", "pod", "root", "-n", namespace, check=False).returncode != 0


IN_CLUSTER_LIST_PODS = """
import json, os, ssl, sys, urllib.error, urllib.request
sa = '/var/run/secrets/kubernetes.io/serviceaccount'
token = open(sa + '/token').read()
ns = open(sa + '/namespace').read()
ctx = ssl.create_default_context(cafile=sa + '/ca.crt')
url = 'https://%s:%s/api/v1/namespaces/%s/pods' % (
    os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT'], ns)
req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + token})
try:
    status = urllib.request.urlopen(req, context=ctx).status
except urllib.error.HTTPError as e:
    status = e.code
open('/dev/termination-log', 'w').write(str(status))
"""


@pytest.mark.parametrize("granted", [False, True], ids=["no-role", "with-role"])
def test_service_account_token_is_authorised_by_rbac(
    cluster: Cluster, namespace: str, granted: bool
) -> None:
    cluster.kubectl("create", "serviceaccount", "bot", "-n", namespace)
    if granted:
        cluster.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods",
                        "-n", namespace)
        cluster.kubectl("create", "rolebinding", "bot-reads", "--role=pod-reader",
                        f"--serviceaccount={namespace}:bot", "-n", namespace)
    cluster.apply(pod_manifest("client", IN_CLUSTER_LIST_PODS, serviceAccountName="bot"),
                  namespace)
    p = wait_for(lambda: finished(cluster, namespace, "client"), timeout=60, message="client")
    message = p["status"]["containerStatuses"][0]["state"]["terminated"].get("message")
    # 403, not 401: the projected token authenticated, RBAC refused.
    assert message == ("200" if granted else "403")


def test_job_with_backoff_limit_0_and_failing_pod_ends_failed(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fails"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": PYTHON_IMAGE,
                            "command": ["python", "-c", "raise SystemExit(1)"]}],
        }}},
    }, namespace)

    def failed() -> JSON | None:
        job = cluster.get_json("job", "fails", "-n", namespace)
        return next((c for c in job["status"].get("conditions", [])
                     if c["type"] == "Failed" and c["status"] == "True"), None)

    condition = wait_for(failed, timeout=90, message="Job condition Failed")
    assert condition["reason"] == "BackoffLimitExceeded"
    job = cluster.get_json("job", "fails", "-n", namespace)
    assert job["status"]["failed"] == 1
    assert not job["status"].get("succeeded")


def test_env_and_volumes_reach_the_process(
    cluster: Cluster, namespace: str, s3_secret: Callable[[str], str]
) -> None:
    secret = s3_secret(namespace)
    cluster.kubectl("create", "configmap", "settings", "--from-literal=epochs=3",
                    "-n", namespace)
    cluster.apply({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }, namespace)
    code = """
import json, os
out = {k: os.environ.get(k) for k in ('KEY', 'EPOCHS', 'NAME', 'NS', 'NODE')}
out['epochs_file'] = open('/etc/settings/epochs').read()
out['secret_file'] = open('/etc/s3/AWS_ACCESS_KEY_ID').read()
out['labels'] = open('/etc/podinfo/labels').read()
open('/scratch/x', 'w').write('scratch')
open('/data/written', 'w').write('persisted')
open('/dev/termination-log', 'w').write(json.dumps(out))
"""
    manifest = pod_manifest("envvol", code, container={
        "env": [
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": secret,
                                                           "key": "AWS_ACCESS_KEY_ID"}}},
            {"name": "EPOCHS", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                 "key": "epochs"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "volumeMounts": [
            {"name": "settings", "mountPath": "/etc/settings"},
            {"name": "s3", "mountPath": "/etc/s3", "readOnly": True},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "data", "mountPath": "/data"},
        ],
    }, volumes=[
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "s3", "secret": {"secretName": secret}},
        {"name": "podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
    ])
    manifest["metadata"]["labels"] = {"team": "ml"}
    cluster.apply(manifest, namespace)
    p = wait_for(lambda: finished(cluster, namespace, "envvol"), timeout=90, message="envvol")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert p["status"]["phase"] == "Succeeded", terminated
    out = json.loads(terminated["message"])
    assert out["KEY"] == cluster.s3_access_key
    assert out["EPOCHS"] == "3" and out["epochs_file"] == "3"
    assert out["NAME"] == "envvol" and out["NS"] == namespace
    assert out["NODE"] == p["spec"]["nodeName"]
    assert out["secret_file"] == cluster.s3_access_key
    assert out["labels"] == 'team="ml"'
    pvc = cluster.get_json("pvc", "data", "-n", namespace)
    assert pvc["status"]["phase"] == "Bound"
    pv = cluster.get_json("pv", pvc["spec"]["volumeName"])
    assert (Path(pv["spec"]["hostPath"]["path"]) / "written").read_text() == "persisted"
    assert not Path("/scratch/x").exists()  # emptyDir was mounted only in the pod


def test_deleted_pod_gets_sigterm_then_is_removed(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    code = """
import signal, sys, time
def on_term(signum, frame):
    open('/out/sigterm', 'w').write('graceful')
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open('/out/started', 'w').write('1')
time.sleep(600)
"""
    tmp_path.chmod(0o777)  # the image runs as a non-root user
    manifest = pod_manifest("sleeper", code, container={
        "volumeMounts": [{"name": "out", "mountPath": "/out"}]},
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}],
        terminationGracePeriodSeconds=10)
    cluster.apply(manifest, namespace)
    wait_for((tmp_path / "started").exists, timeout=60, message="sleeper started")
    cluster.kubectl("delete", "pod", "sleeper", "-n", namespace, "--wait=false")
    wait_for(lambda: cluster.kubectl("get", "pod", "sleeper", "-n", namespace,
                                     check=False).returncode != 0,
             timeout=30, message="pod removed")
    assert (tmp_path / "sigterm").read_text() == "graceful"


def test_failing_liveness_probe_restarts_the_container(
    cluster: Cluster, namespace: str
) -> None:
    manifest = pod_manifest("unhealthy", "import time; time.sleep(600)", container={
        "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                          "failureThreshold": 1},
    }, restartPolicy="Always", terminationGracePeriodSeconds=1)
    cluster.apply(manifest, namespace)

    def restarted() -> JSON | None:
        statuses = pod(cluster, namespace, "unhealthy")["status"].get("containerStatuses", [])
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    status = wait_for(restarted, timeout=60, message="a restart after liveness failure")
    assert "terminated" in status["lastState"]


def test_kubectl_logs_reads_the_container_output(cluster: Cluster, namespace: str) -> None:
    cluster.apply(pod_manifest("talker", "print('hello from the pod')"), namespace)
    wait_for(lambda: finished(cluster, namespace, "talker"), timeout=60, message="talker")
    logs = cluster.kubectl("logs", "talker", "-n", namespace).stdout
    assert logs == "hello from the pod\n"


def test_minio_answers_with_the_cluster_credentials(cluster: Cluster) -> None:
    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint,
                      aws_access_key_id=cluster.s3_access_key,
                      aws_secret_access_key=cluster.s3_secret_key, region_name="us-east-1")
    s3.put_object(Bucket=cluster.bucket, Key="tests/hello.txt", Body=b"forja")
    body = s3.get_object(Bucket=cluster.bucket, Key="tests/hello.txt")["Body"].read()
    assert body == b"forja"
    wrong = boto3.client("s3", endpoint_url=cluster.s3_endpoint, aws_access_key_id="nobody",
                         aws_secret_access_key="wrong-secret", region_name="us-east-1")
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|Forbidden|403"):
        wrong.get_object(Bucket=cluster.bucket, Key="tests/hello.txt")


def test_slow_starter_survives_its_startup_probe_then_becomes_ready(
    cluster: Cluster, namespace: str
) -> None:
    # Listens only after 3 s: the startup probe fails a few times within its threshold.
    code = ("import os, socket, time; time.sleep(3); s = socket.create_server("
            "(os.environ['POD_IP'], 8080)); time.sleep(600)")
    manifest = pod_manifest("slow", code, container={
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
                         "failureThreshold": 20},
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }, terminationGracePeriodSeconds=1)
    cluster.apply(manifest, namespace)

    def ready() -> JSON | None:
        statuses = pod(cluster, namespace, "slow")["status"].get("containerStatuses", [])
        return statuses[0] if statuses and statuses[0]["ready"] else None

    status = wait_for(ready, timeout=60, message="slow starter Ready")
    assert status["restartCount"] == 0
    assert status["started"] is True
