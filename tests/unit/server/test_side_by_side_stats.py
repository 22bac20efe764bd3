"""The pure parts of bench/server/side_by_side.py: percentiles, /proc parsing, the
process-tree CPU sum, pooling rounds, the table and the verdict against the goal."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[3] / "bench/server/sbs_stats.py"
_spec = importlib.util.spec_from_file_location("sbs_stats", _PATH)
assert _spec and _spec.loader
sbs = importlib.util.module_from_spec(_spec)
sys.modules["sbs_stats"] = sbs  # dataclasses look their module up by name
_spec.loader.exec_module(sbs)


@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = list(np.random.default_rng(1).exponential(5.0, 257))
    assert sbs.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert sbs.percentile([3.0], 99) == 3.0
    assert sbs.percentile([1.0, 2.0], 50) == 1.5
    assert math.isnan(sbs.percentile([], 50))
    with pytest.raises(ValueError, match="outside"):
        sbs.percentile([1.0], 101)


def test_parse_stat_survives_parentheses_and_spaces_in_the_name() -> None:
    # Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime ...
    line = "4242 (tritonserver (x) y) S 17 4242 4242 0 -1 4194560 10 0 0 0 123 45 0 0 20 0\n"
    assert sbs.parse_stat(line) == (4242, 17, 168)


def test_tree_ticks_sums_descendants_only() -> None:
    rows = [(1, 0, 1000), (10, 1, 5), (11, 10, 7), (12, 11, 11), (20, 1, 100), (13, 10, 2)]
    assert sbs.tree_ticks(rows, 10) == 5 + 7 + 11 + 2
    assert sbs.tree_ticks(rows, 12) == 11
    assert sbs.tree_ticks(rows, 99) == 0


def test_tree_pids() -> None:
    rows = [(1, 0, 0), (10, 1, 0), (11, 10, 0), (12, 11, 0), (20, 1, 0)]
    assert sbs.tree_pids(rows, 10) == {10, 11, 12}
    assert sbs.tree_pids(rows, 99) == set()


def test_listening_decodes_proc_net_tcp_and_tcp6() -> None:
    lines = [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode",
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 "
        "       0 1111 1 0000000000000000 100 0 0 10 0",
        "   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 "
        "       0 2222 1 0000000000000000 100 0 0 10 0",
        "   2: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0 "
        "       0 3333 1 0000000000000000 100 0 0 10 0",
        "   0: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0",
        "   1: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0",
    ]
    got = sbs.listening(lines)
    assert got == {1111: ("127.0.0.1", 8080), 2222: ("0.0.0.0", 80),
                   4444: ("::ffff:127.0.0.1", 8081), 5555: ("::1", 8082)}
    assert [sbs.is_loopback(a) for a, _ in got.values()] == [True, False, True, True]


def test_tree_listeners_finds_this_process_socket() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ("127.0.0.1", port) in sbs.tree_listeners(os.getpid())
    assert ("127.0.0.1", port) not in sbs.tree_listeners(os.getpid())


def test_tree_cpu_seconds_of_this_process_grows_with_work() -> None:
    before = sbs.tree_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = sbs.tree_cpu_seconds(os.getpid())
    assert after - before >= 0.2


def _rounds() -> list:
    return [sbs.Round(latencies=[1.0] * 50 + [10.0], wall=1.0, errors=0, cpu_seconds=0.51,
                      client_cpu_seconds=0.2),
            sbs.Round(latencies=[2.0] * 49, wall=1.5, errors=1, cpu_seconds=0.49)]


def test_pool_uses_all_rounds() -> None:
    row = sbs.pool("forja", "json", _rounds())
    assert row.requests == 100
    assert row.rps == pytest.approx(100 / 2.5)
    assert row.p50 == pytest.approx(float(np.percentile([1.0] * 50 + [10.0] + [2.0] * 49, 50)))
    assert row.p99 > 2.0
    assert row.cpu_ms_per_req == pytest.approx(10.0)
    assert row.client_cpu_ms_per_req == pytest.approx(2.0)
    assert row.errors == 1


def _row(server: str, payload: str, rps: float, p99: float, na: str = "") -> object:
    return sbs.Row(server, payload, rps=rps, p50=p99 / 2, p99=p99, cpu_ms_per_req=1.0,
                   client_cpu_ms_per_req=0.5, requests=100, na=na)


def test_table_and_verdict() -> None:
    rows = [_row("forja", "json", 100, 50), _row("kserve", "json", 40, 200),
            _row("mlserver", "json", 120, 40), _row("forja", "binary", 300, 20),
            _row("kserve", "binary", 160, 30), _row("mlserver", "binary", 0, 0, na="415")]
    text = sbs.table(rows)
    assert text.count("\n") == len(rows) + 1
    assert "| forja | json | 100.0 | 25.0 | 50.0 | 1.00 | 0.50 | 100 | 0 |" in text
    assert "| mlserver | binary | n/a: 415 |" in text
    lines = sbs.verdict(rows)
    assert lines[0].startswith("json vs kserve: throughput 2.50x (goal >= 2x)")
    assert lines[0].endswith("ok")
    assert lines[1].startswith("json vs mlserver") and lines[1].endswith("MISS")
    assert lines[2].startswith("binary vs kserve: throughput 1.88x") and lines[2].endswith("MISS")
    assert lines[3] == "binary vs mlserver: n/a"
