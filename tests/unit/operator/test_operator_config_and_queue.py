import asyncio

import pytest

from forja_operator.config import load_config
from forja_operator.errors import ConfigError
from forja_operator.workqueue import WorkQueue


def test_config_reads_chart_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "trainerImage: t\ntrainerTfImage: tf\nserverImage: s\n"
        "artifactStore: {uri: 's3://models', endpoint: 'http://m:9000', credentialsSecret: creds}\n"
        "watchNamespaces: [a, b]\nmetricsPort: 9090\nhealthPort: 9091\n"
    )
    cfg = load_config(f)
    assert cfg.trainer_tf_image == "tf" and cfg.artifact_store.credentials_secret == "creds"
    assert cfg.watch_namespaces == ["a", "b"] and cfg.metrics_port == 9090


def test_config_error_names_field(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("metricsPort: lots\n")
    with pytest.raises(ConfigError, match="metricsPort"):
        load_config(f)


def test_defaults_without_file(monkeypatch):
    monkeypatch.delenv("FORJA_CONFIG", raising=False)
    assert load_config().artifact_store.uri.startswith("s3://")


def test_queue_collapses_bursts_and_never_runs_a_key_twice_at_once():
    async def scenario():
        running, runs, overlap = set(), [], []

        async def rec(key):
            if key in running:
                overlap.append(key)
            running.add(key)
            runs.append(key)
            await asyncio.sleep(0.01)
            running.discard(key)
            return None

        q = WorkQueue("t", rec, workers=4)
        q.start()
        q.ready.set()
        for _ in range(50):
            q.add("a")
        q.add("b")
        await asyncio.sleep(0.005)
        q.add("a")  # while a runs: once more afterwards
        await asyncio.sleep(0.1)
        await q.stop()
        return runs, overlap

    runs, overlap = asyncio.run(scenario())
    assert overlap == []
    assert runs.count("a") == 2 and runs.count("b") == 1


def test_queue_retries_failures_with_backoff():
    async def scenario():
        calls = []

        async def rec(key):
            calls.append(key)
            if len(calls) < 3:
                raise RuntimeError("boom")
            return None

        q = WorkQueue("t", rec, workers=1, base_retry=0.01)
        q.start()
        q.ready.set()
        q.add("k")
        await asyncio.sleep(0.2)
        await q.stop()
        return calls

    assert asyncio.run(scenario()) == ["k", "k", "k"]
