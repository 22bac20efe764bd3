"""The local cluster on Kubernetes' own node: two kubelets, each on its own containerd
and runc with a CNI bridge, running forja's images (forja_localcluster start): the suite's cluster
(tests/fixtures/real_cluster.py).

What a user's cluster does, checked here for real: kubelets as system:node:<name>
under NodeRestriction, nvidia.com/gpu from a device plugin, restricted pods from the
images enforced by the runtime, the kernel's OOM kill reported as OOMKilled, and
`kubectl logs` through the kubelet's serving certificate; and forja's drills on them,
among them a 2-worker gang with one worker per node, one of them killed mid-run.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import real_cli
from forja_api.contract import TF_CONFIG_ENV, Result
from forja_localcluster.config import ClusterInfo
from forja_localcluster.kueue import OPT_IN_LABEL
from support.containers import app_version
from support.contract_command import CONTRACT_TRAINER
from support.gang_jobs import classifier_gang_job, result_of, tf_gang_job
from support.restricted import ENFORCE_RESTRICTED

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
MADE_HERE = "forja.dev/test-module=real-nodes"


class RealCluster:
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.kubeconfig = info["kubeconfig"]
        self.kubectl_bin = str(Path(info["bin_dir"]) / "kubectl")

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            capture_output=True, text=True, input=input, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


_cluster_cli = real_cli


@pytest.fixture(scope="module")
def real(real_nodes: ClusterInfo) -> Iterator[RealCluster]:
    cluster = RealCluster(dataclasses.asdict(real_nodes))
    yield cluster
    # What this module made goes with it: the suite's other tests on this cluster run
    # their own operator, which watches every namespace and would act on these jobs,
    # versions and services too, and their pods hold CPU that later gangs need. The
    # namespaces go first, while the chart's operator still runs to release the
    # InferenceServices' finalizers; then the chart's operator itself.
    cluster.kubectl("delete", "namespace", "-l", MADE_HERE, "--timeout=100s", check=False)
    subprocess.run([str(Path(cluster.info["bin_dir"]) / "helm"), "uninstall", "forja",
                    "--namespace", "forja-system", "--wait", "--ignore-not-found",
                    f"--kubeconfig={cluster.kubeconfig}"],
                   capture_output=True, text=True, timeout=300, check=False)


def _namespace(real: RealCluster, restricted: bool = True) -> str:
    name = f"real-{uuid.uuid4().hex[:6]}"
    real.kubectl("create", "namespace", name)
    labels = [MADE_HERE, *([ENFORCE_RESTRICTED] if restricted else [])]
    real.kubectl("label", "namespace", name, *labels)
    wait_for(lambda: real.kubectl("get", "serviceaccount", "default", "-n", name,
                                  check=False).returncode == 0, timeout=60, interval=0.5,
             message="the default serviceaccount")
    return name


def _store_secret(real: RealCluster, ns: str) -> None:
    real.kubectl("create", "secret", "generic", "forja-artifact-store", "-n", ns,
                 f"--from-literal=accessKey={real.info['s3_access_key']}",
                 f"--from-literal=secretKey={real.info['s3_secret_key']}")


RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile":
                  {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True}


def _pod(name: str, script: str, *, limits: dict[str, Any] | None = None,
         pod_security: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": RESTRICTED_POD if pod_security is None else pod_security,
            "containers": [{
                "name": "main", "image": "forja/server:0.1.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "resources": {"limits": limits or {"memory": "256Mi"}},
                "securityContext": RESTRICTED_CONTAINER,
            }],
        },
    }


def _finished(real: RealCluster, ns: str, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        pod = real.get_json("pod", name, "-n", ns)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    try:
        return wait_for(done, timeout=120, interval=1, message=f"pod {name} to finish")
    except BaseException:
        print(real.kubectl("describe", "pod", name, "-n", ns, check=False).stdout)
        raise


def test_two_real_nodes_with_gpus_from_the_device_plugin(real: RealCluster) -> None:
    nodes = real.get_json("nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["forja-node-0", "forja-node-1"]
    for node in nodes:
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == "v1.37.2"
        assert info["containerRuntimeVersion"].startswith("containerd://")
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
    wait_for(lambda: all(
        n["status"].get("allocatable", {}).get("nvidia.com/gpu") == "2"
        for n in real.get_json("nodes")["items"]), timeout=60, interval=1,
        message="nvidia.com/gpu from the fake device plugin")


def test_a_kubelet_may_change_only_its_own_node(real: RealCluster) -> None:
    """NodeRestriction: node-0's credentials cannot label node-1."""
    kubeconfig = str(Path(real.info["state_dir"]) / "node-forja-node-0.kubeconfig")
    own = real.kubectl("label", "node", "forja-node-0", "forja.dev/probe=1", "--overwrite",
                       kubeconfig=kubeconfig, check=False)
    other = real.kubectl("label", "node", "forja-node-1", "forja.dev/probe=1", "--overwrite",
                         kubeconfig=kubeconfig, check=False)
    assert own.returncode == 0, own.stderr
    assert other.returncode != 0 and "forbidden" in other.stderr.lower(), other.stderr


def test_restricted_pod_from_the_server_image_with_a_gpu(real: RealCluster) -> None:
    ns = _namespace(real)
    endpoint = real.info["s3_endpoint"]
    script = ("id -u; grep -E '^(Seccomp|CapEff):' /proc/self/status; "
              "echo gpu=$NVIDIA_VISIBLE_DEVICES; touch /probe 2>&1; "
              "python -c 'import sys, urllib.request as u; "
              "print(\"minio\", u.urlopen(sys.argv[1]).status)' "
              f"{endpoint}/minio/health/live")
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        _pod("probe", script, limits={"memory": "256Mi", "nvidia.com/gpu": 1})))
    pod = _finished(real, ns, "probe")
    logs = real.kubectl("logs", "probe", "-n", ns).stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    lines = logs.splitlines()
    assert lines[0] == "1000"
    assert "Seccomp:\t2" in logs and "CapEff:\t0000000000000000" in logs
    assert f"gpu=GPU-fake-{pod['spec']['nodeName']}-" in logs
    assert "Read-only file system" in logs and "minio 200" in logs


def test_the_kubelets_pull_from_the_cluster_registry_that_pods_cannot_reach(
    real: RealCluster,
) -> None:
    """The nodes pull from the cluster's registry by its name and, for the chart's
    default names (docker.io's), as docker.io's mirror: with imagePullPolicy Always and
    no internet here, a "Successfully pulled" can only have come from it. A pod cannot
    reach the registry (it listens on the nodes' loopback), and an image it lacks fails
    to pull with the reason in the pod's events."""
    ns = _namespace(real)
    registry = real.info["registry"]
    port = registry.rsplit(":", 1)[1]
    host_ip = real.info["s3_endpoint"].split("//")[1].rsplit(":", 1)[0]
    probe = ("python -c 'import socket, sys\n"
             "for host in sys.argv[1:]:\n"
             "    try: socket.create_connection((host, int(PORT)), timeout=3)\n"
             "    except OSError as e: print(host, type(e).__name__)\n"
             "    else: print(host, \"open\")' 127.0.0.1 HOST").replace(
                 "PORT", port).replace("HOST", host_ip)
    pods = {f"{how}-{node}": (image, node)
            for how, image in (("named", f"{registry}/forja/server:{app_version()}"),
                               ("mirror", f"forja/server:{app_version()}"))
            for node in real.info["nodes"]}
    for name, (image, node) in pods.items():
        pod = _pod(name, probe)
        pod["spec"]["nodeName"] = node
        pod["spec"]["containers"][0].update(image=image, imagePullPolicy="Always")
        real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    missing = _pod("missing", "true")
    missing["spec"]["containers"][0]["image"] = f"{registry}/forja/never-pushed:1"
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(missing))

    for name in pods:
        pod = _finished(real, ns, name)
        logs = real.kubectl("logs", name, "-n", ns).stdout
        assert pod["status"]["phase"] == "Succeeded", logs
        assert logs.split() == ["127.0.0.1", "ConnectionRefusedError",
                                host_ip, "ConnectionRefusedError"], logs

    def events(reason: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for e in real.get_json("events", "-n", ns)["items"]:
            if e["reason"] == reason:
                name = e["involvedObject"]["name"]
                found[name] = found.get(name, "") + e.get("message", "") + "\n"
        return found

    pulled = events("Pulled")
    for name, (image, _) in pods.items():
        assert f'Successfully pulled image "{image}"' in pulled.get(name, ""), pulled
    failed = wait_for(lambda: events("Failed").get("missing"), timeout=60, interval=1,
                      message="the missing image's pull to fail")
    assert "never-pushed:1: not found" in failed, failed


def test_pod_security_is_enforced_at_admission_and_by_the_kubelet(real: RealCluster) -> None:
    ns = _namespace(real)
    root = _pod("as-root", "id -u", pod_security={"runAsUser": 0})
    refused = real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(root), check=False)
    assert refused.returncode != 0 and "restricted" in refused.stderr, refused.stderr
    # Past admission (a namespace without the label), the kubelet itself refuses a
    # non-root pod whose user is root.
    open_ns = _namespace(real, restricted=False)
    lying = _pod("lying", "id -u", pod_security={"runAsNonRoot": True, "runAsUser": 0})
    real.kubectl("apply", "-n", open_ns, "-f", "-", input=json.dumps(lying))

    def refused_by_kubelet() -> str | None:
        pod = real.get_json("pod", "lying", "-n", open_ns)
        for status in pod["status"].get("containerStatuses", []):
            waiting = status.get("state", {}).get("waiting") or {}
            if waiting.get("reason") == "CreateContainerConfigError":
                return str(waiting.get("message"))
        return None

    message = wait_for(refused_by_kubelet, timeout=90, interval=1,
                       message="the kubelet to refuse a root user under runAsNonRoot")
    assert "non-root" in message


def test_the_kernel_oom_kill_is_reported_as_oomkilled(real: RealCluster) -> None:
    ns = _namespace(real)
    hog = "python -c 'b = bytearray(400 * 1024 * 1024); print(len(b))'"
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        _pod("hog", hog, limits={"memory": "128Mi"})))
    pod = _finished(real, ns, "hog")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137, terminated


def test_a_service_reaches_a_server_pod_on_the_other_node(real: RealCluster) -> None:
    """kube-proxy: a ClusterIP Service in front of a server on one node, called from a
    pod pinned to the other."""
    ns = _namespace(real)
    server = _pod("web", "exec python -m http.server 8080 --bind 0.0.0.0 --directory /app")
    server["metadata"]["labels"] = {"app": "web"}
    server["spec"]["nodeName"] = "forja-node-0"
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(server))
    real.kubectl("expose", "pod", "web", "-n", ns, "--port=80", "--target-port=8080")
    wait_for(lambda: real.get_json("pod", "web", "-n", ns)["status"].get("podIP")
             and any(c.get("ready") for c in real.get_json("pod", "web", "-n", ns)["status"]
                     .get("containerStatuses", [])),
             timeout=90, interval=1, message="the web pod")
    ip = real.get_json("service", "web", "-n", ns)["spec"]["clusterIP"]
    client = _pod("client", "python -c 'import sys, urllib.request; "
                  "print(urllib.request.urlopen(sys.argv[1], timeout=10).status)' "
                  f"http://{ip}/")
    client["spec"]["nodeName"] = "forja-node-1"
    time.sleep(1)  # kube-proxy's first sync of the new Service
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(client))
    pod = _finished(real, ns, "client")
    logs = real.kubectl("logs", "client", "-n", ns).stdout
    assert pod["status"]["phase"] == "Succeeded" and logs.strip() == "200", logs
    # And from the cluster's namespace itself, where tests and the demo run.
    with urllib.request.urlopen(f"http://{ip}/", timeout=10) as r:
        assert r.status == 200


def _helm(real: RealCluster, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(Path(real.info["bin_dir"]) / "helm"), *args,
                             f"--kubeconfig={real.kubeconfig}"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# Getting the operator and the 7 GB trainer into a node alone took 15 min on a
# machine loaded by other builds: past the suite's 900 s.
@pytest.mark.timeout(1800)
def test_forja_from_its_images_trains_versions_and_serves_on_real_nodes(
    real: RealCluster,
) -> None:
    """The chart's operator pod from forja/operator; the attempt from forja/trainer;
    the verify and server pods from forja/server; every one a runc container under a
    real kubelet, in namespaces that enforce the restricted profile."""
    loaded = _cluster_cli("load-images", "operator", "trainer", "--node", "forja-node-0")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    real.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                 str(ROOT / "helm/forja/crds"))
    real.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "forja-system",
                     "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))
    # Every image by the cluster registry's name, as a user's values name theirs.
    images = f"{real.info['registry']}/forja"
    _helm(real, "upgrade", "--install", "forja", str(ROOT / "helm/forja"),
          "--namespace", "forja-system", "--skip-crds",
          "--set", f"image.repository={images}/operator",
          "--set", f"config.trainerImage={images}/trainer:{app_version()}",
          "--set", f"config.serverImage={images}/server:{app_version()}",
          "--set", f"config.artifactStore.endpoint={real.info['s3_endpoint']}",
          "--set", f"config.artifactStore.uri=s3://{real.info['bucket']}",
          # The operator image is on node-0 only (the trainer's 7 GB too: disk).
          "--set-string", "nodeSelector.forja\\.dev/local-node=0",
          # The node-loss drill below: a pod on a lost node goes after 5 s, not 60.
          "--set", "config.nodeLostSeconds=5",
          "--wait", "--timeout", "5m")
    operator = real.get_json("pods", "-n", "forja-system")["items"][0]
    assert operator["spec"]["containers"][0]["image"].startswith(f"{images}/operator:")
    assert operator["spec"]["nodeName"] == "forja-node-0"

    ns = _namespace(real)
    _store_secret(real, ns)
    job = {
        "apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "shapes"},
        "spec": {
            "model": "shapes", "trainer": "image-classifier",
            "dataset": {"uri": "generated://shapes?classes=3&per_class=12&size=16",
                        "format": "image-folder"},
            "hyperparameters": {"epochs": 1, "batch_size": 8, "image_size": 16},
            "resources": {"cpu": "1", "memory": "2Gi"},
            "scheduling": {"nodeSelector": {"forja.dev/local-node": "0"}},
        },
    }
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))

    def trained() -> dict[str, Any] | None:
        status = real.get_json("trainingjob", "shapes", "-n", ns).get("status", {})
        assert status.get("phase") != "Failed", status
        return status if status.get("phase") == "Succeeded" else None

    try:
        status = wait_for(trained, timeout=600, interval=2, message="the TrainingJob")
    except BaseException:
        print(real.kubectl("describe", "trainingjob", "shapes", "-n", ns, check=False).stdout)
        print(real.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout)
        print(real.kubectl("logs", "-n", "forja-system", "deploy/forja", "--tail=60",
                           check=False).stdout)
        raise
    attempt = next(p for p in real.get_json("pods", "-n", ns)["items"]
                   if p["spec"]["containers"][0]["image"].startswith(f"{images}/trainer:"))
    assert attempt["spec"]["nodeName"] == "forja-node-0"
    mv = status["modelVersion"]
    real.kubectl("wait", "--for=condition=Ready", f"modelversion/{mv}", "-n", ns,
                 "--timeout=300s")
    # The verify pod is gone once the version is Ready; the kubelet's events stay.
    events = real.get_json("events", "-n", ns)["items"]
    assert any("-verify-" in e["involvedObject"]["name"] and e.get("source", {}).get("host")
               and f"{images}/server:" in e.get("message", "") for e in events), [
        (e["involvedObject"]["name"], e.get("message")) for e in events]

    isvc = {"apiVersion": "forja.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "shapes"},
            "spec": {"model": "shapes", "selector": {"range": ">=0.1.0"},
                     "resources": {"cpu": "250m", "memory": "512Mi"}}}
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(isvc))
    try:
        real.kubectl("wait", "--for=condition=Ready", "inferenceservice/shapes", "-n", ns,
                     "--timeout=300s")
    except BaseException:
        print(real.kubectl("describe", "inferenceservice", "shapes", "-n", ns,
                           check=False).stdout)
        print(real.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout)
        raise
    service = real.get_json("service", "shapes", "-n", ns)
    base = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    def metadata() -> dict[str, Any] | None:
        with urllib.request.urlopen(f"{base}/v2/models/shapes", timeout=10) as r:
            return dict(json.loads(r.read()))

    meta = wait_for(metadata, timeout=60, interval=1, message="the Service to answer")
    shape = [d if d > 0 else 1 for d in meta["inputs"][0]["shape"]]
    count = 1
    for d in shape:
        count *= d
    body = json.dumps({"inputs": [{"name": meta["inputs"][0]["name"], "shape": shape,
                                   "datatype": "FP32", "data": [0.5] * count}]}).encode()
    req = urllib.request.Request(f"{base}/v2/models/shapes/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
    assert answer["outputs"] and answer["model_name"] == "shapes"
    component = "app.kubernetes.io/component"
    servers = [p for p in real.get_json("pods", "-n", ns)["items"]
               if p["metadata"].get("labels", {}).get(component) == "model-server"]
    assert servers and all(p["spec"]["containers"][0]["image"].startswith(f"{images}/server:")
                           for p in servers)


def _finished_job(real: RealCluster, ns: str, name: str, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = real.get_json("trainingjob", name, "-n", ns).get("status", {})
        assert status.get("phase") != "Failed", status
        return status if status.get("phase") == "Succeeded" else None

    try:
        return wait_for(done, timeout=timeout, interval=2, message=f"TrainingJob {name}")
    except BaseException:
        print(real.kubectl("describe", "trainingjob", name, "-n", ns, check=False).stdout)
        print(real.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout)
        raise


def test_a_kernel_oom_kill_in_the_container_resumes_with_half_the_batch(
    real: RealCluster,
) -> None:
    """A custom trainer in forja/trainer (tests/support/contract_trainer.py, given as
    its command) checkpoints epoch 1, then allocates past its 256Mi limit: the kernel
    kills it in the container's cgroup, the kubelet reports OOMKilled, and the operator
    resumes from the checkpoint with half the batch. Uses the operator installed above."""
    ns = _namespace(real)
    _store_secret(real, ns)
    job = {
        "apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "oom"},
        "spec": {
            "model": "oom", "trainer": "custom", "command": CONTRACT_TRAINER,
            "dataset": {"uri": "generated://contract", "format": "generated"},
            "hyperparameters": {"epochs": 3, "epoch_seconds": 0.3, "batch_size": 32,
                                "oom_attempts": [1], "oom_below_batch": 32},
            "restartPolicy": {"backoffLimit": 3, "backoffSeconds": 0, "onOOM": "HalveBatch"},
            "resources": {"cpu": "250m", "memory": "256Mi"},
            "checkpoint": {"intervalEpochs": 1},
            "scheduling": {"nodeSelector": {"forja.dev/local-node": "0"}},
        },
    }
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))
    status = _finished_job(real, ns, "oom", timeout=300)
    attempts = status["attempts"]
    print(f"\nOOM drill on a real container: {[(a['pod'], a.get('reason')) for a in attempts]}")
    first, last = attempts[0], attempts[-1]
    assert first.get("reason") == "OOMKilled", first
    # The kubelet's word, not ours: the container's last state says the kernel killed it.
    pod = real.get_json("pod", first["pod"], "-n", ns)
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137), terminated
    assert int(last["overrides"]["batch_size"]) == 16, last
    assert last.get("resumedFrom"), last
    log = real.kubectl("logs", "-n", ns, last["pod"]).stdout
    assert "at epoch 1" in log, log[-1000:]


def test_a_deleted_training_pod_checkpoints_on_sigterm_and_resumes(real: RealCluster) -> None:
    """Preemption: the attempt pod of the real image classifier is deleted mid-run; the
    kubelet sends SIGTERM, the trainer checkpoints at the next batch and exits, and the
    next attempt resumes from that checkpoint (reason Preempted: backoff not spent)."""
    ns = _namespace(real)
    _store_secret(real, ns)
    job = {
        "apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "pre"},
        "spec": {
            "model": "pre", "trainer": "image-classifier",
            "dataset": {"uri": "generated://shapes?classes=3&per_class=16&size=16",
                        "format": "image-folder"},
            # Progress reaches the status at most every 5 s: long enough to be caught
            # mid-run (here ~25 epochs a second; 30 were over before the first report).
            "hyperparameters": {"epochs": 600, "batch_size": 8, "image_size": 16},
            "resources": {"cpu": "1", "memory": "2Gi"},
            "restartPolicy": {"backoffLimit": 0},
            "checkpoint": {"intervalEpochs": 1000},
            "scheduling": {"nodeSelector": {"forja.dev/local-node": "0"}},
        },
    }
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))

    def mid_run() -> tuple[str, int] | None:
        status = real.get_json("trainingjob", "pre", "-n", ns).get("status", {})
        assert status.get("phase") not in ("Failed", "Succeeded"), status
        epoch = int((status.get("progress") or {}).get("epoch", 0))
        attempts = status.get("attempts") or []
        return (attempts[-1]["pod"], epoch) if epoch >= 2 and attempts else None

    pod, epoch = wait_for(mid_run, timeout=300, interval=0.5, message="epoch 2 of attempt 1")
    real.kubectl("delete", "pod", pod, "-n", ns, "--wait=false")
    status = _finished_job(real, ns, "pre", timeout=600)
    attempts = status["attempts"]
    print(f"\npreemption drill on a real container at epoch {epoch}: "
          f"{[(a['pod'], a.get('reason')) for a in attempts]}")
    assert attempts[0]["reason"] == "Preempted", attempts[0]
    # backoffLimit 0: had the deletion been counted as a failure the job would be Failed.
    assert attempts[-1].get("resumedFrom"), attempts[-1]
    log = real.kubectl("logs", "-n", ns, attempts[-1]["pod"]).stdout
    resumed = [line for line in log.splitlines() if "resumed at epoch" in line]
    assert resumed, log[-1500:]
    # No checkpoint interval was due (1000 epochs): only the SIGTERM checkpoint exists,
    # so resuming at or past the epoch seen before the deletion proves it was written.
    at = int(resumed[0].split("resumed at epoch", 1)[1].split()[0])
    assert at >= epoch, (at, epoch, resumed)


def _gang_job(name: str, workers: int, epochs: int, **spec: Any) -> dict[str, Any]:
    """The image classifier on generated shapes (the operator's gang tests' job), each
    worker alone on its node."""
    fields: dict[str, Any] = {"resources": {"cpu": "500m", "memory": "2Gi"},
                              "scheduling": {"oneWorkerPerNode": workers > 1}, **spec}
    return classifier_gang_job(name, epochs, workers=workers, **fields)


def _result(real: RealCluster, ns: str, pod: str) -> Result:
    state = real.get_json("pod", pod, "-n", ns)["status"]["containerStatuses"][0]["state"]
    result = Result.from_termination_message(state["terminated"].get("message"))
    assert result is not None, state
    return result


KUEUE = "kueue.x-k8s.io/v1beta2"


def _kueue_queue(real: RealCluster, ns: str, cpu: str, memory: str) -> None:
    """Kueue started on this cluster, ``ns`` opted in, and a LocalQueue ``team`` there
    on a ClusterQueue of its own with this quota."""
    started = _cluster_cli("start", module="forja_localcluster.kueue")
    assert started.returncode == 0, started.stderr[-4000:]
    real.kubectl("label", "namespace", ns, f"{OPT_IN_LABEL[0]}={OPT_IN_LABEL[1]}")
    for obj in (
        {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}},
        {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": ns},
         "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                  "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [
                      {"name": "default-flavor", "resources": [
                          {"name": "cpu", "nominalQuota": cpu},
                          {"name": "memory", "nominalQuota": memory}]}]}]}},
        {"apiVersion": KUEUE, "kind": "LocalQueue",
         "metadata": {"name": "team", "namespace": ns}, "spec": {"clusterQueue": ns}},
    ):
        real.kubectl("apply", "-f", "-", input=json.dumps(obj))


@pytest.mark.timeout(1800)  # pulls the trainer into node-1
def test_two_workers_on_two_nodes_through_kueue_train_one_version_as_well_as_one(
    real: RealCluster,
) -> None:
    """Issue 16's proof: a 2-worker job queued in a real Kueue, admitted as one
    Workload, rank 0 on one node and rank 1 on the other, joined by gloo through the
    rendezvous Service's ClusterIP (kube-proxy) and the pods' own addresses across the
    nodes' bridges. Uses the operator installed above."""
    loaded = _cluster_cli("load-images", "trainer", "--node", "forja-node-1")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    ns = _namespace(real)
    _store_secret(real, ns)
    # Both jobs fit at once: 500m per worker, 2Gi each.
    _kueue_queue(real, ns, cpu="2", memory="8Gi")
    queued = {"kueue.x-k8s.io/queue-name": "team"}
    for job in (_gang_job("solo", 1, epochs=8), _gang_job("duo", 2, epochs=8)):
        job["metadata"]["labels"] = queued
        real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))

    def admitted() -> dict[str, Any] | None:
        wl = real.kubectl("get", "workloads.kueue.x-k8s.io", "duo-a1", "-n", ns, "-o", "json",
                          check=False)
        if wl.returncode != 0:
            return None
        doc: dict[str, Any] = json.loads(wl.stdout)
        conditions = (doc.get("status") or {}).get("conditions") or []
        return doc if any(c["type"] == "Admitted" and c["status"] == "True"
                          for c in conditions) else None

    workload = wait_for(admitted, timeout=300, interval=1, message="Kueue admits duo-a1")
    # One Workload for the gang: both pods, counted together against the quota.
    assert sum(ps["count"] for ps in workload["spec"]["podSets"]) == 2, workload["spec"]
    _finished_job(real, ns, "solo", timeout=600)
    status = _finished_job(real, ns, "duo", timeout=600)
    pods = {rank: real.get_json("pod", f"duo-a1-w{rank}", "-n", ns) for rank in (0, 1)}
    nodes = {rank: pod["spec"]["nodeName"] for rank, pod in pods.items()}
    assert sorted(nodes.values()) == ["forja-node-0", "forja-node-1"], nodes
    for pod in pods.values():
        # Kueue's gate, lifted at admission; the attempt is its pod group.
        assert not pod["spec"].get("schedulingGates"), pod["spec"]
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "duo-a1"
    assert {w["rank"]: w.get("node") for w in status["workers"]} == nodes, status["workers"]
    for rank in (0, 1):
        log = real.kubectl("logs", "-n", ns, f"duo-a1-w{rank}").stdout
        assert f"joining a world of 2 as rank {rank} (gloo" in log, log[-2000:]
    one, rank0, rank1 = (_result(real, ns, p) for p in ("solo-a1", "duo-a1-w0", "duo-a1-w1"))
    assert rank0.artifact is not None and rank1.ok and rank1.artifact is None
    acc1, acc2 = one.metrics["val_accuracy"], rank0.metrics["val_accuracy"]
    print(f"\n2 workers through Kueue on {nodes}: val_accuracy {acc2:.3f}; 1 worker: "
          f"{acc1:.3f} (baseline {rank0.metrics['baseline_accuracy']:.3f})")
    assert acc2 >= rank0.metrics["baseline_accuracy"] + 0.25, rank0.metrics
    assert abs(acc2 - acc1) <= 0.15, (one.metrics, rank0.metrics)
    assert status["modelVersion"] == "duo-v0.1.0"


def test_a_killed_worker_costs_at_most_one_checkpoint_interval(real: RealCluster) -> None:
    """SIGKILL to rank 1's process on its node, mid-epoch, through that node's
    containerd: the kubelet reports the exit, the operator ends the attempt and stops
    rank 0 on the other node, and the next attempt resumes both from the last
    checkpoint (one per epoch)."""
    ns = _namespace(real)
    _store_secret(real, ns)
    job = _gang_job("crash", 2, epochs=40, checkpoint={"intervalEpochs": 1},
                    restartPolicy={"backoffLimit": 2, "backoffSeconds": 0})
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))

    def mid_run() -> dict[str, Any] | None:
        status = real.get_json("trainingjob", "crash", "-n", ns).get("status", {})
        assert status.get("phase") not in ("Failed", "Succeeded"), status
        ckpt = (status.get("lastCheckpoint") or {}).get("epoch", 0)
        return status if ckpt >= 2 else None

    status = wait_for(mid_run, timeout=600, interval=0.5, message="a checkpoint at epoch 2")
    seen = int(status["progress"]["epoch"])
    pod = real.get_json("pod", "crash-a1-w1", "-n", ns)
    killed = _cluster_cli("kill-container", pod["spec"]["nodeName"],
                          pod["status"]["containerStatuses"][0]["containerID"])
    assert killed.returncode == 0, killed.stderr[-2000:]
    status = _finished_job(real, ns, "crash", timeout=900)
    attempts = status["attempts"]
    print(f"\nworker killed at epoch {seen}: "
          f"{[(a['pod'], a.get('reason'), a.get('message')) for a in attempts]}")
    assert attempts[0]["reason"] not in ("Completed", "Preempted"), attempts[0]
    terminated = real.get_json("pod", "crash-a1-w1", "-n", ns)["status"][
        "containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 137, terminated
    assert attempts[1]["resumedFrom"], attempts[1]
    logs = real.kubectl("logs", "-n", ns, f"crash-a{attempts[1]['index']}-w0").stdout
    resumed = [line for line in logs.splitlines() if "resumed at epoch" in line]
    assert resumed, logs[-1500:]
    at = int(resumed[0].split("resumed at epoch", 1)[1].split()[0])
    # A checkpoint every epoch: the restart loses at most the epoch in flight (progress
    # in the status is at most one report behind the trainer).
    assert at >= seen - 1, (at, seen)
    last = attempts[-1]["index"]
    nodes = {real.get_json("pod", f"crash-a{last}-w{rank}", "-n", ns)["spec"]["nodeName"]
             for rank in (0, 1)}
    assert nodes == {"forja-node-0", "forja-node-1"}, nodes


@pytest.mark.timeout(1800)  # pushes the TF trainer; both nodes pull it
def test_the_tf_pipeline_trains_across_two_workers_on_two_nodes(real: RealCluster) -> None:
    """distill-qat-tflite under MultiWorkerMirroredStrategy, one worker per node: each
    worker reaches the other through that worker's own ClusterIP Service (TF_CONFIG),
    which kube-proxy carries across the nodes' bridges. The chief publishes the one
    version. Uses the operator installed above."""
    loaded = _cluster_cli("load-images", "trainer-tf")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    ns = _namespace(real)
    _store_secret(real, ns)
    job = tf_gang_job("tfduo", scheduling={"oneWorkerPerNode": True},
                      resources={"cpu": "500m", "memory": "3Gi"})
    real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))
    status = _finished_job(real, ns, "tfduo", timeout=1200)
    assert [a["reason"] for a in status["attempts"]] == ["Completed"], status["attempts"]
    pods = {rank: real.get_json("pod", f"tfduo-a1-w{rank}", "-n", ns) for rank in (0, 1)}
    nodes = {rank: pod["spec"]["nodeName"] for rank, pod in pods.items()}
    assert sorted(nodes.values()) == ["forja-node-0", "forja-node-1"], nodes
    ips = [real.get_json("service", f"tfduo-a1-w{rank}", "-n", ns)["spec"]["clusterIP"]
           for rank in (0, 1)]
    for rank, pod in pods.items():
        assert pod["spec"]["containers"][0]["image"].startswith("forja/trainer-tf:")
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        config = json.loads(env[TF_CONFIG_ENV])
        assert config["cluster"]["worker"][1 - rank] == f"{ips[1 - rank]}:2222"
        log = real.kubectl("logs", "-n", ns, f"tfduo-a1-w{rank}").stdout
        assert f"MultiWorkerMirroredStrategy: worker {rank} of 2" in log, log[-2000:]
    chief, other = (result_of(pods[rank]) for rank in (0, 1))
    assert chief is not None and chief.artifact is not None
    assert other is not None and other.ok and other.artifact is None
    print(f"\n2 TF workers on {nodes}: int8 test F1 macro "
          f"{chief.metrics['test_f1_macro']:.3f}")
    assert status["modelVersion"] == "tfduo-v0.1.0"


def test_a_training_pod_on_a_lost_node_resumes_on_the_other_node(real: RealCluster) -> None:
    """forja-node-1 loses power mid-training (its kubelet stops, its containers die):
    the node goes NotReady, Kubernetes evicts the attempt pod after the chart's
    nodeLostSeconds, and the job resumes from its checkpoint on forja-node-0.
    Uses the operator the test above installed."""
    loaded = _cluster_cli("load-images", "trainer", "--node", "forja-node-1")
    assert loaded.returncode == 0, loaded.stderr[-3000:]  # loaded already: a no-op
    ns = _namespace(real)
    _store_secret(real, ns)
    # The first attempt goes to node-1: node-0 (the operator's) takes no new pods yet.
    real.kubectl("cordon", "forja-node-0")
    try:
        job = {
            "apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "lost"},
            "spec": {
                "model": "lost", "trainer": "image-classifier",
                "dataset": {"uri": "generated://shapes?classes=3&per_class=16&size=16",
                            "format": "image-folder"},
                "hyperparameters": {"epochs": 40, "batch_size": 8, "image_size": 16},
                "resources": {"cpu": "1", "memory": "2Gi"},
            },
        }
        real.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))

        def checkpointed() -> dict[str, Any] | None:
            status = real.get_json("trainingjob", "lost", "-n", ns).get("status", {})
            assert status.get("phase") not in ("Failed", "Succeeded"), status
            return status if status.get("lastCheckpoint") else None

        try:
            status = wait_for(checkpointed, timeout=300, interval=1, message="a checkpoint")
        except BaseException:
            print(real.kubectl("describe", "trainingjob", "lost", "-n", ns, check=False).stdout)
            print(real.kubectl("get", "nodes,pods", "-A", "-o", "wide", check=False).stdout)
            print(real.kubectl("describe", "pods", "-n", ns, check=False).stdout[-3000:])
            raise
    finally:
        real.kubectl("uncordon", "forja-node-0")
    first = real.get_json("pod", status["attempts"][0]["pod"], "-n", ns)
    assert first["spec"]["nodeName"] == "forja-node-1"
    down = _cluster_cli("node-down", "forja-node-1")
    assert down.returncode == 0, down.stderr[-2000:]
    lost_at = time.monotonic()

    def finished() -> dict[str, Any] | None:
        status = real.get_json("trainingjob", "lost", "-n", ns).get("status", {})
        assert status.get("phase") != "Failed", status
        return status if status.get("phase") == "Succeeded" else None

    try:
        status = wait_for(finished, timeout=600, interval=2, message="the job to finish")
    except BaseException:
        print(real.kubectl("describe", "trainingjob", "lost", "-n", ns, check=False).stdout)
        print(real.kubectl("get", "nodes,pods", "-A", "-o", "wide", check=False).stdout)
        raise
    attempts = status["attempts"]
    print(f"node lost -> job finished on the other node in {time.monotonic() - lost_at:.0f} s;"
          f" attempts: {[(a['pod'], a.get('reason')) for a in attempts]}")
    assert attempts[0]["reason"] == "NodeLost", attempts
    assert "forja-node-1" in attempts[0]["message"]
    assert attempts[-1]["resumedFrom"], attempts
    second = real.get_json("pod", attempts[-1]["pod"], "-n", ns)
    assert second["spec"]["nodeName"] == "forja-node-0"
    node = real.get_json("node", "forja-node-1")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] != "True"
    events = real.get_json("events", "-n", ns, "--field-selector", "involvedObject.name=lost")
    assert any(e["reason"] == "NodeLost" for e in events["items"])
