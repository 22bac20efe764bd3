"""One pod's life on the node: sandbox, volumes, init containers, containers, probes,
restarts, status, and deletion (SIGTERM, grace period, SIGKILL, then the final delete).

A thread per pod; the agent's watch hands it each new version of the pod object.
"""

from __future__ import annotations

import base64
import logging
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forja_localcluster.agent import probes
from forja_localcluster.agent.podspec import (
    EnvError,
    Mount,
    container_env,
    cpu_limit,
    expand,
    memory_limit,
    should_restart,
)
from forja_localcluster.agent.runtime import ContainerProcess, ExitInfo
from forja_localcluster.agent.status import (
    ContainerView,
    PodView,
    now_rfc3339,
    pod_phase,
    pod_status,
)
from forja_localcluster.agent.volumes import VolumeError, container_mounts, prepare_volumes
from forja_localcluster.config import CHECKOUT_ANNOTATION, PACKAGE_DIRS
from forja_localcluster.errors import ApiError, NotFoundError
from forja_localcluster.kubeapi import KubeClient

__all__ = ["NodeContext", "PodWorker"]

JSON = dict[str, Any]
log = logging.getLogger("forja.agent.pod")

MAX_MESSAGE = 4096
FALLBACK_LOG_BYTES = 2048
# Restart back-off: a kubelet starts at 10 s and caps at 300 s; a test cluster wants
# a crash loop to be visible within seconds, so we start at 1 s and cap at 30 s.
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
TICK = 0.2


@dataclass
class NodeContext:
    """What every pod worker on one node shares."""

    client: KubeClient
    node_name: str
    host_ip: str
    pods_dir: Path
    base_env: Mapping[str, str]
    allocate_ip: Callable[[str], str]
    release_ip: Callable[[str], None]
    claim_path: Callable[[str, str], Path]
    register_logs: Callable[[str, str, str, Path], None]
    forget: Callable[[str], None]
    hosts_file: Path | None = None  # the cluster's hosts file, shown at /etc/hosts


@dataclass
class Container:
    spec: JSON
    init: bool
    view: ContainerView
    proc: ContainerProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    readiness: probes.ProbeState | None = None
    liveness: probes.ProbeState | None = None
    startup: probes.ProbeState | None = None
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    runs: int = 0
    started_at: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])


class PodWorker(threading.Thread):
    def __init__(self, ctx: NodeContext, pod: JSON) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.dir = ctx.pods_dir / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.wake = threading.Event()
        self.gone = False  # the pod object no longer exists
        self.stopping = False  # the agent is shutting down
        self.pod_ip = ""
        self.last_reported: JSON | None = None
        self.frozen = False  # never report status (a pod that ended before we started)
        spec = pod["spec"]
        self.containers = [
            Container(c, True, ContainerView(c["name"], c.get("image", "")))
            for c in spec.get("initContainers", []) or []
        ] + [
            Container(c, False, ContainerView(c["name"], c.get("image", "")))
            for c in spec.get("containers", [])
        ]
        self.view = PodView(
            init=[c.view for c in self.containers if c.init],
            main=[c.view for c in self.containers if not c.init],
            pod_ip="", host_ip=ctx.host_ip, start_time=now_rfc3339(),
        )
        self.volume_paths: dict[str, Path] = {}

    # --- inputs from the agent -------------------------------------------------------
    def update(self, pod: JSON) -> None:
        self.pod = pod
        self.wake.set()

    def deleted(self) -> None:
        self.gone = True
        self.wake.set()

    def shutdown(self) -> None:
        self.stopping = True
        self.wake.set()

    # --- lifecycle -------------------------------------------------------------------
    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    def _deleting(self) -> bool:
        return self.gone or self.stopping or bool(self.pod["metadata"].get("deletionTimestamp"))

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.error("pod %s/%s: %s", self.namespace, self.pod_name, traceback.format_exc())
            self.view.reason, self.view.message = "AgentError", traceback.format_exc()[-800:]
            self._report()
            while not self._deleting():
                self.wake.wait(1.0)
                self.wake.clear()
            self._terminate()
        finally:
            self.ctx.forget(self.uid)

    def _run(self) -> None:
        phase = self.pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            # Finished before this agent started: its status stays as reported then,
            # and only its deletion is left to do.
            self.frozen = True
            self._wait_for_deletion()
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pod_ip = self.ctx.allocate_ip(self.uid)
        self.view.pod_ip = self.pod_ip
        self.view.sandbox_ready = True
        self._report()
        while True:
            if self._deleting():
                self._terminate()
                return
            try:
                self.volume_paths = prepare_volumes(
                    self.ctx.client, self.pod, self.dir, self.ctx.claim_path
                )
                break
            except (VolumeError, ApiError) as exc:
                for c in self.containers:
                    c.view.state = {"waiting": {"reason": "ContainerCreating",
                                                "message": str(exc)[:MAX_MESSAGE]}}
                self._report()
                self._sleep(2.0)
        while not self._deleting():
            now = time.monotonic()
            self._step(now)
            self._report()
            if self._terminal():
                self._release_ip()
                self._wait_for_deletion()
                return
            self._sleep(TICK)
        self._terminate()

    def _sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def _terminal(self) -> bool:
        return pod_phase(self.view) in ("Succeeded", "Failed")

    def _active(self) -> list[Container]:
        """Init containers one at a time until all succeeded, then every main container."""
        for c in self.containers:
            if not c.init:
                break
            if not ("terminated" in c.view.state and c.view.state["terminated"]["exitCode"] == 0
                    and not c.view.will_restart):
                return [c]
        self.view.initialized = True
        return [c for c in self.containers if not c.init]

    def _step(self, now: float) -> None:
        for c in self._active():
            if c.proc is None:
                if c.view.will_restart and now >= c.next_start:
                    self._start(c, now)
                continue
            info = c.proc.poll()
            if info is not None:
                self._exited(c, info, now)
                continue
            self._probe(c, now)

    # --- containers ------------------------------------------------------------------
    def _lookup(self, plural: str) -> Callable[[str, str], dict[str, str] | None]:
        def lookup(namespace: str, name: str) -> dict[str, str] | None:
            try:
                obj = self.ctx.client.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
            except NotFoundError:
                return None
            data = obj.get("data") or {}
            if plural == "secrets":
                return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            return dict(data)

        return lookup

    def _checkout(self) -> Path | None:
        """The checkout whose packages this pod imports, if its pod or namespace names one.

        One cluster serves every worktree on the machine; the test fixtures annotate
        their namespaces so pods run the code of the worktree under test.
        """
        value = self.pod["metadata"].get("annotations", {}).get(CHECKOUT_ANNOTATION)
        if value is None:
            try:
                ns = self.ctx.client.get(f"/api/v1/namespaces/{self.namespace}")
                value = ns["metadata"].get("annotations", {}).get(CHECKOUT_ANNOTATION)
            except ApiError:
                value = None
        if value and Path(value, "hack", "forja_localcluster").is_dir():
            return Path(value)
        return None

    def _start(self, c: Container, now: float) -> None:
        pod = dict(self.pod)
        pod["status"] = {**self.pod.get("status", {}), "podIP": self.pod_ip,
                         "podIPs": [{"ip": self.pod_ip}], "hostIP": self.ctx.host_ip,
                         "hostIPs": [{"ip": self.ctx.host_ip}]}
        base = {**self.ctx.base_env, "HOSTNAME": self.pod_name, "FORJA_POD_IP": self.pod_ip}
        checkout = self._checkout()
        if checkout is not None:
            base["PYTHONPATH"] = ":".join(str(checkout / d) for d in PACKAGE_DIRS)
        try:
            env = container_env(pod, c.spec, base, self._lookup("secrets"),
                                self._lookup("configmaps"))
        except EnvError as exc:
            c.view.state = {"waiting": {"reason": "CreateContainerConfigError",
                                        "message": str(exc)}}
            c.next_start = now + 2.0
            return
        argv = [expand(a, env) for a in (c.spec.get("command") or []) + (c.spec.get("args") or [])]
        if not c.spec.get("command"):
            c.view.state = {"waiting": {
                "reason": "CreateContainerError",
                "message": "no command: the forja node agent runs a container's command "
                           "as a local process and does not run images",
            }}
            c.next_start = now + 5.0
            return
        term_file = self.dir / "termination" / c.name
        term_file.parent.mkdir(parents=True, exist_ok=True)
        term_file.write_bytes(b"")
        log_dir = self.dir / "logs" / c.name
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / f"{c.runs}.log"
        try:
            mounts = container_mounts(c.spec, self.volume_paths, term_file)
            if self.ctx.hosts_file is not None:
                mounts.append(Mount(str(self.ctx.hosts_file), "/etc/hosts", read_only=True))
        except VolumeError as exc:
            c.view.state = {"waiting": {"reason": "CreateContainerConfigError",
                                        "message": str(exc)}}
            c.next_start = now + 2.0
            return
        cwd = Path(c.spec.get("workingDir") or self.dir)
        if not cwd.is_dir():
            cwd.mkdir(parents=True, exist_ok=True)
        c.proc = ContainerProcess(
            key=f"{self.uid}/{c.name}", argv=argv, env=env, mounts=mounts, cwd=cwd,
            log_file=log_file, termination_file=term_file,
            memory_limit=memory_limit(c.spec), cpu_limit=cpu_limit(c.spec),
        )
        self.ctx.register_logs(self.namespace, self.pod_name, c.name, log_file)
        c.env = env
        if c.runs > 0:
            c.view.restart_count += 1
        c.runs += 1
        c.started_at = now_rfc3339()
        c.view.container_id = f"forja://{self.uid}-{c.name}-{c.runs}"
        c.view.state = {"running": {"startedAt": c.started_at}}
        c.startup = self._probe_state(c.spec.get("startupProbe"), False, now)
        c.liveness = self._probe_state(c.spec.get("livenessProbe"), True, now)
        c.readiness = self._probe_state(c.spec.get("readinessProbe"), False, now)
        c.view.started = c.startup is None
        c.view.ready = c.view.started and c.readiness is None and not c.init

    @staticmethod
    def _probe_state(spec: JSON | None, initial: bool, now: float) -> probes.ProbeState | None:
        if not spec:
            return None
        state = probes.ProbeState(spec, initial)
        state.start(now)
        return state

    def _probe(self, c: Container, now: float) -> None:
        assert c.proc is not None
        if c.startup is not None and not c.view.started:
            if c.startup.due(now):
                ok = probes.run_probe(c.startup.spec, c.spec, self.pod_ip, c.proc.pid, c.env)
                if ok:
                    c.view.started = True
                    c.view.ready = c.readiness is None
                    for p in (c.liveness, c.readiness):
                        if p is not None:
                            p.start(now)
                else:
                    # A startup probe starts out failing: only failureThreshold
                    # consecutive failures end the container, not the first one.
                    c.startup.record(ok, now)
                    if c.startup.exhausted:
                        self._kill(c, "startup probe failed")
            return
        if c.readiness is not None and c.readiness.due(now):
            ok = probes.run_probe(c.readiness.spec, c.spec, self.pod_ip, c.proc.pid, c.env)
            c.view.ready = c.readiness.record(ok, now)
        if c.liveness is not None and c.liveness.due(now):
            ok = probes.run_probe(c.liveness.spec, c.spec, self.pod_ip, c.proc.pid, c.env)
            if not c.liveness.record(ok, now):
                self._kill(c, "liveness probe failed")

    def _kill(self, c: Container, why: str) -> None:
        assert c.proc is not None
        log.info("pod %s/%s container %s: %s, killing", self.namespace, self.pod_name,
                 c.name, why)
        c.proc.signal(signal.SIGTERM)
        if c.proc.wait(self._grace()) is None:
            c.proc.kill_all()
            c.proc.wait(5.0)

    def _grace(self) -> float:
        meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if meta_grace is not None:
            return float(meta_grace)
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _message(self, c: Container, info: ExitInfo) -> str:
        assert c.proc is not None
        term_file = self.dir / "termination" / c.name
        try:
            message = term_file.read_bytes()[:MAX_MESSAGE].decode(errors="replace")
        except OSError:
            message = ""
        policy = c.spec.get("terminationMessagePolicy", "File")
        if not message and policy == "FallbackToLogsOnError" and info.exit_code != 0:
            log_file = self.dir / "logs" / c.name / f"{c.runs - 1}.log"
            try:
                lines = log_file.read_bytes().splitlines()[-80:]
                message = b"\n".join(lines)[-FALLBACK_LOG_BYTES:].decode(errors="replace")
            except OSError:
                message = ""
        return message

    def _exited(self, c: Container, info: ExitInfo, now: float, restart: bool = True) -> None:
        terminated: JSON = {
            "exitCode": info.exit_code,
            "reason": info.reason,
            "startedAt": c.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": c.view.container_id,
        }
        message = self._message(c, info)
        if message:
            terminated["message"] = message
        c.proc = None
        c.view.ready = False
        c.view.started = False
        if c.init:
            again = info.exit_code != 0 and self.restart_policy != "Never"
        else:
            again = should_restart(self.restart_policy, info.exit_code)
        if again and restart and not self._deleting():
            c.view.last_state = {"terminated": terminated}
            c.view.state = {"waiting": {
                "reason": "CrashLoopBackOff" if info.exit_code != 0 else "Completed",
                "message": f"back-off {c.backoff:.0f}s restarting container {c.name}",
            }}
            c.next_start = now + c.backoff
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)
            c.view.will_restart = True
        else:
            c.view.state = {"terminated": terminated}
            c.view.will_restart = False

    # --- status ----------------------------------------------------------------------
    def _report(self) -> None:
        if self.gone or self.frozen:
            return
        status = pod_status(self.view, self.pod.get("status", {}))
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [(c["type"], c["status"]) for c in status["conditions"]]
        if comparable == self.last_reported:
            return
        try:
            answer = self.ctx.client.merge_patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": status},
            )
            self.last_reported = comparable
            if answer.get("metadata", {}).get("uid") == self.uid:
                self.pod = answer
        except NotFoundError:
            self.gone = True
        except ApiError as exc:
            log.warning("status of %s/%s: %s", self.namespace, self.pod_name, exc)

    # --- the end ---------------------------------------------------------------------
    def _wait_for_deletion(self) -> None:
        while not self._deleting():
            self._sleep(5.0)
        self._terminate()

    def _terminate(self) -> None:
        """SIGTERM, wait the grace period, SIGKILL; then delete the pod for good."""
        running = [c for c in self.containers if c.proc is not None]
        grace = 0.0 if self.gone else self._grace()
        if self.stopping:
            grace = min(grace, 5.0)
        for c in running:
            assert c.proc is not None
            c.proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
            c.proc is not None and c.proc.poll() is None for c in running
        ):
            time.sleep(0.1)
        now = time.monotonic()
        for c in running:
            assert c.proc is not None
            if c.proc.poll() is None:
                c.proc.kill_all()
                c.proc.wait(5.0)
            info = c.proc.poll() or ExitInfo(137, "Error", False)
            self._exited(c, info, now, restart=False)
        self._release_ip()
        if self.stopping:
            return  # the agent is going away; the pod object stays as it is
        self._report()
        if not self.gone:
            try:
                self.ctx.client.delete(
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                     "preconditions": {"uid": self.uid}},
                )
            except NotFoundError:
                pass
            except ApiError as exc:
                log.warning("final delete of %s/%s: %s", self.namespace, self.pod_name, exc)
        # Like a kubelet, a deleted pod's volumes and logs go with it.
        shutil.rmtree(self.dir, ignore_errors=True)

    def _release_ip(self) -> None:
        if self.pod_ip:
            self.ctx.release_ip(self.uid)
