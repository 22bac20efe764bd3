"""GitOps for real: Argo CD syncs forja from a local git repository and judges its health.

Argo CD's application controller and repo server (built from the pinned module),
with forja's Lua checks in argocd-cm as the chart ships them, sync two
Applications from a git daemon on loopback: the chart (so the operator runs as the
chart's Deployment, its pods from forja/operator on the suite's real nodes) and a
directory of TrainingJobs. Argo CD must then report each job's health through forja's checks:
Progressing while it trains, Healthy when it produced a version, Degraded when it
failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.cluster import wait_for
from forja_localcluster.argocd import NAMESPACE, TRACKING_ANNOTATION, ArgoCD
from support.containers import app_version
from support.contract_command import CONTRACT_TRAINER

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
TRAINER = CONTRACT_TRAINER
STORE_SECRET = "forja-artifact-store"


def trainingjob(name: str, **hyperparameters: Any) -> dict[str, Any]:
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": name,
            "trainer": "custom",
            "command": TRAINER,
            "dataset": {"uri": "generated://contract", "format": "generated"},
            "hyperparameters": {"batch_size": 8, **hyperparameters},
            "restartPolicy": {"backoffLimit": 1, "backoffSeconds": 0},
            "resources": {"cpu": "100m", "memory": "256Mi"},
        },
    }


def application(name: str, server: str, repo: Any, path: str, namespace: str,
                helm: dict[str, Any] | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"repoURL": repo.url, "targetRevision": "main", "path": path}
    if helm is not None:
        source["helm"] = helm
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "project": "default",
            "source": source,
            "destination": {"server": server, "namespace": namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["ServerSideApply=true"],
            },
        },
    }


def app_status(argocd: ArgoCD, name: str) -> dict[str, Any]:
    app = json.loads(argocd.kubectl("get", "applications.argoproj.io", name, "-n", NAMESPACE,
                                    "-o", "json"))
    return app.get("status") or {}


def resource_health(status: dict[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    for res in status.get("resources") or []:
        if res.get("kind") == kind and res.get("name") == name:
            return res.get("health")
    return None


def test_argocd_cm_carries_the_charts_health_checks_verbatim(argocd):
    data = json.loads(argocd.kubectl("get", "configmap", "argocd-cm", "-n", NAMESPACE,
                                     "-o", "json"))["data"]
    lua = sorted((ROOT / "helm/forja/argocd/health").glob("*.lua"))
    assert [p.stem for p in lua] == [
        "forja.dev_InferenceService", "forja.dev_ModelVersion", "forja.dev_TrainingJob"]
    for path in lua:
        assert data[f"resource.customizations.health.{path.stem}"] == path.read_text()


def test_argocd_syncs_forja_and_reports_trainingjob_health(cluster, argocd, namespace,
                                                           git_repo, kubectl):
    # Credentials never go to Git: the operator's pods reference this Secret by name.
    kubectl("create", "secret", "generic", STORE_SECRET, "-n", namespace,
            f"--from-literal=accessKey={cluster.s3_access_key}",
            f"--from-literal=secretKey={cluster.s3_secret_key}")
    operator_app, jobs_app = f"{namespace}-forja"[:53], f"{namespace}-jobs"[:53]
    # Every image by the cluster registry's name, as a user's values name theirs.
    images = f"{cluster.info.registry}/forja"
    values = {
        "config": {
            "trainerImage": f"{images}/trainer:{app_version()}",
            "serverImage": f"{images}/server:{app_version()}",
            "watchNamespaces": [namespace],
            "artifactStore": {"uri": f"s3://{cluster.bucket}/gitops", "endpoint":
                              cluster.s3_endpoint, "credentialsSecret": STORE_SECRET},
        },
        "rbac": {"gatewayAPI": False},
        "image": {"repository": f"{images}/operator"},
    }
    jobs = git_repo.work / "jobs"
    jobs.mkdir()
    (jobs / "trains.yaml").write_text(yaml.safe_dump(
        trainingjob("gitops-trains", epochs=10, epoch_seconds=1.0)))
    # The real image-classifier trainer on a dataset that does not exist.
    missing = trainingjob("gitops-fails", epochs=1)
    missing["spec"].pop("command")
    missing["spec"].update(
        trainer="image-classifier", resources={"cpu": "500m", "memory": "2Gi"},
        dataset={"uri": f"s3://{cluster.bucket}/gitops/no-such-dataset/",
                 "format": "image-folder"})
    (jobs / "fails.yaml").write_text(yaml.safe_dump(missing))
    git_repo.commit("two TrainingJobs")
    try:
        argocd.kubectl("apply", "-f", "-", input=json.dumps(application(
            operator_app, argocd.server, git_repo, "charts/forja", namespace,
            helm={"releaseName": "forja-gitops", "valuesObject": values})))

        def operator_synced_and_healthy() -> dict[str, Any] | None:
            st = app_status(argocd, operator_app)
            ok = (st.get("sync", {}).get("status") == "Synced"
                  and st.get("health", {}).get("status") == "Healthy")
            if ok:
                return st
            # Shown by wait_for on timeout: what Argo CD says is missing.
            raise AssertionError({k: st.get(k) for k in ("sync", "health", "conditions",
                                                         "operationState")})

        st = wait_for(operator_synced_and_healthy, timeout=180, interval=2,
                      message=f"Application {operator_app} Synced and Healthy")
        kinds = {(r["kind"], r["name"]) for r in st["resources"]}
        assert ("Deployment", "forja-gitops") in kinds
        assert ("CustomResourceDefinition", "trainingjobs.forja.dev") in kinds
        assert not any("helm.sh/hook" in json.dumps(r) for r in st["resources"])
        operator = json.loads(kubectl("get", "deployment", "forja-gitops", "-n", namespace,
                                      "-o", "json").stdout)
        # How the module's teardown finds what this Application left behind.
        assert TRACKING_ANNOTATION in operator["metadata"]["annotations"]
        pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l",
                                  "app.kubernetes.io/instance=forja-gitops", "-o",
                                  "json").stdout)["items"]
        assert pods and all(
            p["spec"]["containers"][0]["image"] == f"{images}/operator:{app_version()}"
            and p["spec"]["nodeName"].startswith("forja-node-") for p in pods), pods

        argocd.kubectl("apply", "-f", "-", input=json.dumps(application(
            jobs_app, argocd.server, git_repo, "jobs", namespace)))
        # Each job's (health, message) as Argo CD reported it, in order, deduplicated.
        seen: dict[str, list[tuple[str, str]]] = {"gitops-trains": [], "gitops-fails": []}

        def both_finished() -> dict[str, Any] | None:
            st = app_status(argocd, jobs_app)
            done = True
            for name, history in seen.items():
                health = resource_health(st, "TrainingJob", name)
                state = health.get("status") if health else None
                entry = (str(state), str(health.get("message", "")) if health else "")
                if state and (not history or history[-1] != entry):
                    history.append(entry)
                if state not in ("Healthy", "Degraded"):
                    done = False
            return st if done else None

        st = wait_for(both_finished, timeout=240, interval=0.5,
                      message=f"both TrainingJobs finished in Argo CD's eyes; seen {seen}")
        print("Argo CD health seen:", seen)
        assert st["sync"]["status"] == "Synced", st["sync"]
        # Argo CD's judgement follows forja's Lua checks through the job's life.
        assert seen["gitops-trains"][-1][0] == "Healthy", seen
        assert seen["gitops-trains"][-1][1].startswith("Produced ModelVersion "), seen
        # Progressing while training, with the epoch the trainer reported (the Lua
        # check's message from status.progress), before Healthy.
        assert any(h == "Progressing" and "epoch" in m for h, m in seen["gitops-trains"]), seen
        assert all(h == "Progressing" for h, _ in seen["gitops-trains"][1:-1]), seen
        assert seen["gitops-fails"][-1][0] == "Degraded", seen
        assert "dataset not found at s3://" in seen["gitops-fails"][-1][1], seen
        # The Application as a whole is as healthy as its worst resource.
        assert st["health"]["status"] == "Degraded", st["health"]
        phase = json.loads(kubectl("get", "trainingjobs.forja.dev", "gitops-trains", "-n",
                                   namespace, "-o", "json").stdout)["status"]["phase"]
        assert phase == "Succeeded"
    finally:
        for app in (jobs_app, operator_app):
            argocd.kubectl("delete", "applications.argoproj.io", app, "-n", NAMESPACE,
                           "--ignore-not-found", "--wait=false")
