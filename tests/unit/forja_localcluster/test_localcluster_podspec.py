from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from forja_localcluster.agent.podspec import (
    EnvError,
    container_env,
    expand,
    field_value,
    parse_quantity,
    should_restart,
)
from forja_localcluster.agent.proxy import backends_by_port
from forja_localcluster.hostsfile import hosts_block, update_hosts

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"a": "1"}},
    "spec": {"nodeName": "forja-node-0", "serviceAccountName": "bot"},
    "status": {"podIP": "10.244.0.7", "hostIP": "10.244.0.1"},
}


@pytest.mark.parametrize(("text", "value"), [
    ("512Mi", Decimal(512 * 2**20)), ("250m", Decimal("0.25")), ("2", Decimal(2)),
    ("1G", Decimal(10**9)), ("1e3", Decimal(1000)),
])
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity("lots")


def test_expand_replaces_known_names_and_keeps_unknown_and_escapes() -> None:
    assert expand("$(A)-$(B)-$$(A)", {"A": "x"}) == "x-$(B)-$(A)"


def test_field_values() -> None:
    assert field_value(POD, "status.podIP") == "10.244.0.7"
    assert field_value(POD, "metadata.labels['a']") == "1"
    assert field_value(POD, "spec.nodeName") == "forja-node-0"
    with pytest.raises(EnvError, match=r"spec\.bogus"):
        field_value(POD, "spec.bogus")


def test_container_env_resolves_refs_in_order() -> None:
    container = {"name": "c", "env": [
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "URL", "value": "http://$(POD_IP):80"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "URL2", "value": "http://$(POD_IP):80"},
        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k",
                                                          "optional": True}}},
    ]}
    env = container_env(POD, container, {"BASE": "1"},
                        secrets=lambda ns, n: {"k": "v"} if (ns, n) == ("ns", "s") else None,
                        config_maps=lambda ns, n: None)
    assert env == {"BASE": "1", "KEY": "v", "URL": "http://$(POD_IP):80",
                   "POD_IP": "10.244.0.7", "URL2": "http://10.244.0.7:80"}


def test_container_env_names_the_missing_secret() -> None:
    container = {"name": "c", "env": [
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}
    with pytest.raises(EnvError, match="env KEY: Secret ns/creds not found"):
        container_env(POD, container, {}, lambda ns, n: None, lambda ns, n: None)


@pytest.mark.parametrize(("policy", "code", "again"), [
    ("Always", 0, True), ("OnFailure", 0, False), ("OnFailure", 1, True), ("Never", 1, False),
])
def test_should_restart(policy: str, code: int, again: bool) -> None:
    assert should_restart(policy, code) is again


def test_backends_follow_port_names_and_readiness() -> None:
    service = {"spec": {"ports": [{"name": "http", "port": 80}]}}
    slices = [{"ports": [{"name": "http", "port": 8080}], "endpoints": [
        {"addresses": ["10.244.0.3"], "conditions": {"ready": True}},
        {"addresses": ["10.244.0.2"], "conditions": {"ready": False}},
    ]}]
    assert backends_by_port(service, slices) == {80: [("10.244.0.3", 8080)]}


def test_hosts_block_is_replaced_and_removed_leaving_other_lines(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    svc = {"metadata": {"name": "web", "namespace": "ns"}, "spec": {"clusterIP": "10.96.0.9"}}
    update_hosts(hosts_block([svc]), hosts)
    assert "10.96.0.9\tweb.ns.svc.cluster.local web.ns.svc web.ns\n" in hosts.read_text()
    update_hosts(hosts_block([]), hosts)
    assert "web.ns" not in hosts.read_text()
    update_hosts(None, hosts)
    assert hosts.read_text() == "127.0.0.1 localhost\n"


def test_hosts_file_never_ends_up_empty(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    update_hosts(None, hosts)
    assert "localhost" in hosts.read_text()
