"""Certificates and kubeconfigs of the local cluster, made with the openssl CLI.

openssl is on every machine that runs this; the ``cryptography`` package would be a
dependency for the sake of a few certificates. Files are created once and reused, so
a restarted cluster keeps its identities and existing kubeconfigs stay valid.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from forja_localcluster.config import (
    API_PORT,
    CLUSTER_DOMAIN,
    HOST_IP,
    KUBERNETES_SERVICE_IP,
    ClusterConfig,
)
from forja_localcluster.provisioner import IDENTITY as PROVISIONER_IDENTITY

__all__ = [
    "ClientIdentity",
    "ensure_node_pki",
    "ensure_pki",
    "ensure_serving_cert",
    "write_kubeconfig",
]

DAYS = "3650"


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's subject: CN is the user, O the groups."""

    file_stem: str
    common_name: str
    organization: str = ""


# Only the admin and the API server's client for the kubelets are in system:masters;
# each kubelet gets its own node identity (ensure_node_pki).
CLIENTS = (
    ClientIdentity("admin", "forja-admin", "system:masters"),
    ClientIdentity("controller-manager", "system:kube-controller-manager"),
    ClientIdentity("scheduler", "system:kube-scheduler"),
    ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
    # kube-proxy of the real nodes: bound to system:node-proxier by the default RBAC.
    ClientIdentity("kube-proxy", "system:kube-proxy"),
    # In no group: its ClusterRole (provisioner.RBAC) is all it may do.
    ClientIdentity("provisioner", PROVISIONER_IDENTITY),
)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _new_key(path: Path) -> None:
    # P-256: as strong as RSA-3072 and made in milliseconds, where ten RSA keys cost
    # seconds of a cold start on a loaded 2-core machine. Kubernetes accepts ECDSA for
    # serving, client and service-account signing keys (ES256 tokens).
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path))
    path.chmod(0o600)


def _sign(pki: Path, stem: str, subject: str, extensions: str) -> None:
    key, crt = pki / f"{stem}.key", pki / f"{stem}.crt"
    if crt.exists() and key.exists():
        return
    _new_key(key)
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text(extensions)
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"),
            "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", DAYS,
            "-extfile", str(ext), "-out", str(crt),
        )


def _subject(identity: ClientIdentity) -> str:
    subject = f"/CN={identity.common_name}"
    if identity.organization:
        subject = f"/O={identity.organization}" + subject
    return subject


def ensure_pki(config: ClusterConfig) -> None:
    """Create the CA, serving, client and service-account keys that are missing."""
    pki = config.pki
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _new_key(pki / "ca.key")
        _openssl(
            "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", "/CN=forja-local-ca",
            "-days", DAYS, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out", str(pki / "ca.crt"),
        )
    names = [
        "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}", "localhost",
    ]
    sans = ",".join(
        [f"DNS:{n}" for n in names]
        + [f"IP:{ip}" for ip in ("127.0.0.1", KUBERNETES_SERVICE_IP, HOST_IP)]
    )
    _sign(
        pki, "apiserver", "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
    )
    for identity in CLIENTS:
        _sign(
            pki, identity.file_stem, _subject(identity),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\n",
        )
    if not (pki / "sa.key").exists():
        _new_key(pki / "sa.key")
        _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    for identity in CLIENTS:
        write_kubeconfig(config, identity.file_stem)


def write_kubeconfig(config: ClusterConfig, user: str) -> Path:
    """A kubeconfig for ``user`` whose certificates sit beside it (absolute paths)."""
    pki = config.pki
    path = config.kubeconfig(user)
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: forja-local
  cluster:
    server: https://127.0.0.1:{API_PORT}
    certificate-authority: {pki / "ca.crt"}
contexts:
- name: forja-local
  context:
    cluster: forja-local
    user: {user}
current-context: forja-local
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
"""
    )
    path.chmod(0o600)
    return path


def ensure_node_pki(config: ClusterConfig, node: str, ip: str) -> Path:
    """A real node's identities: ``system:node:<node>`` in ``system:nodes`` (what the
    Node authorizer and NodeRestriction admission expect of a kubelet), and a serving
    certificate naming the node's IP (the API server dials it for logs and exec).
    Returns the kubelet's kubeconfig."""
    identity = ClientIdentity(f"node-{node}", f"system:node:{node}", "system:nodes")
    _sign(
        config.pki, identity.file_stem, _subject(identity),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n",
    )
    _sign(
        config.pki, f"kubelet-{node}-serving", f"/O=system:nodes/CN=system:node:{node}",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{ip},DNS:{node}\n",
    )
    return write_kubeconfig(config, identity.file_stem)


def ensure_serving_cert(
    config: ClusterConfig, stem: str, common_name: str, ips: list[str]
) -> tuple[Path, Path]:
    """A serving certificate for ``ips``, signed by the cluster CA: for a component the
    API server calls (an admission webhook). Returns (certificate, key)."""
    sans = ",".join(f"IP:{ip}" for ip in ips)
    _sign(
        config.pki, stem, f"/CN={common_name}",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
    )
    return config.pki / f"{stem}.crt", config.pki / f"{stem}.key"
