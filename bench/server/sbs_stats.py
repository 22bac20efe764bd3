"""Pure parts of the side-by-side benchmark (side_by_side.py): percentiles, the CPU time
of a process tree from /proc, pooling rounds into one row, the table and the verdict.

No I/O except reading /proc in ``tree_cpu_seconds``; the unit test feeds the rest.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's
    default), so figures match what bench_server.py printed; nan when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def parse_stat(line: str) -> tuple[int, int, int]:
    """(pid, ppid, utime+stime in clock ticks) from one /proc/<pid>/stat line.

    The command name (field 2) is in parentheses and may hold spaces and ')', so the
    fields are counted from the last ')'.
    """
    pid = int(line.split(" ", 1)[0])
    rest = line[line.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return pid, int(rest[1]), int(rest[11]) + int(rest[12])


def tree_ticks(stats: Iterable[tuple[int, int, int]], root: int) -> int:
    """CPU ticks of ``root`` and all its descendants among ``stats`` (parse_stat rows)."""
    rows = list(stats)
    ticks = {pid: t for pid, _, t in rows}
    return sum(ticks[pid] for pid in tree_pids(rows, root))


def tree_pids(stats: Iterable[tuple[int, int, int]], root: int) -> set[int]:
    """``root`` and all its descendants that are among ``stats``."""
    children: dict[int, list[int]] = {}
    known = set()
    for pid, ppid, _ in stats:
        children.setdefault(ppid, []).append(pid)
        known.add(pid)
    seen: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return seen & known


def _stats(proc: Path) -> list[tuple[int, int, int]]:
    rows = []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            rows.append(parse_stat((d / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return rows


def tree_cpu_seconds(root: int, proc: Path = Path("/proc")) -> float:
    """User+system CPU seconds of a live process tree (server, its workers, its threads)."""
    return tree_ticks(_stats(proc), root) / CLK_TCK


def decode_address(hex_addr: str) -> str:
    """An address of /proc/net/tcp or tcp6 ("0100007F", 32 hex digits for IPv6): the
    kernel prints each 32-bit word in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"  # as ss prints it, not ::ffff:7f00:1
    return str(ip)


def listening(lines: Iterable[str]) -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of the LISTEN rows of /proc/net/tcp{,6}."""
    out = {}
    for line in lines:
        f = line.split()
        if len(f) < 10 or f[3] != "0A" or ":" not in f[1]:
            continue  # the header, or not listening
        addr, port = f[1].split(":")
        out[int(f[9])] = (decode_address(addr), int(port, 16))
    return out


def is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def tree_listeners(root: int, proc: Path = Path("/proc")) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket that ``root``'s process tree listens on."""
    table: dict[int, tuple[str, int]] = {}
    for name in ("tcp", "tcp6"):
        try:
            table.update(listening((proc / "net" / name).read_text().splitlines()))
        except OSError:
            continue
    found = set()
    for pid in tree_pids(_stats(proc), root):
        try:
            fds = list((proc / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in table:
                    found.add(table[inode])
    return sorted(found)


@dataclass
class Round:
    """One closed-loop round against one server: latencies in ms, wall in s."""

    latencies: list[float]
    wall: float
    errors: int
    cpu_seconds: float
    client_cpu_seconds: float = 0.0  # the load generator's own, to see when it is the limit


@dataclass
class Row:
    server: str
    payload: str
    rps: float = math.nan
    p50: float = math.nan
    p99: float = math.nan
    cpu_ms_per_req: float = math.nan
    client_cpu_ms_per_req: float = math.nan
    requests: int = 0
    errors: int = 0
    na: str = ""  # why this server has no figures for this payload
    rounds: list[Round] = field(default_factory=list)


def pool(server: str, payload: str, rounds: Sequence[Round]) -> Row:
    """One row from interleaved rounds: requests over summed wall time, percentiles over
    all latencies, server CPU over all answered requests."""
    lat = [v for r in rounds for v in r.latencies]
    wall = sum(r.wall for r in rounds)
    cpu = sum(r.cpu_seconds for r in rounds)
    client = sum(r.client_cpu_seconds for r in rounds)
    n = len(lat)
    return Row(server, payload, rps=n / wall if wall > 0 else math.nan,
               p50=percentile(lat, 50), p99=percentile(lat, 99),
               cpu_ms_per_req=cpu * 1000 / n if n else math.nan,
               client_cpu_ms_per_req=client * 1000 / n if n else math.nan,
               requests=n, errors=sum(r.errors for r in rounds), rounds=list(rounds))


def table(rows: Sequence[Row]) -> str:
    """Markdown table, one line per server and payload; 'n/a' rows say why."""
    out = ["| server | payload | req/s | p50 ms | p99 ms | server CPU ms/req "
           "| client CPU ms/req | requests | errors |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r.na:
            out.append(f"| {r.server} | {r.payload} | n/a: {r.na} | | | | | | |")
        else:
            out.append(f"| {r.server} | {r.payload} | {r.rps:.1f} | {r.p50:.1f} | {r.p99:.1f} "
                       f"| {r.cpu_ms_per_req:.2f} | {r.client_cpu_ms_per_req:.2f} "
                       f"| {r.requests} | {r.errors} |")
    return "\n".join(out)


def verdict(rows: Sequence[Row], ours: str = "forja", kserve: str = "kserve",
            factor: float = 2.0) -> list[str]:
    """The goal, per payload: ours >= factor x KServe's throughput and >= every other
    peer's, each at an equal or better p99. One line per comparison, 'ok' or 'MISS'."""
    by: Mapping[tuple[str, str], Row] = {(r.server, r.payload): r for r in rows}
    lines = []
    for payload in dict.fromkeys(r.payload for r in rows):
        mine = by.get((ours, payload))
        if mine is None or mine.na:
            lines.append(f"{payload}: no {ours} figures")
            continue
        for r in rows:
            if r.payload != payload or r.server == ours:
                continue
            if r.na:
                lines.append(f"{payload} vs {r.server}: n/a")
                continue
            need = factor if r.server == kserve else 1.0
            ratio = mine.rps / r.rps
            ok = ratio >= need and mine.p99 <= r.p99
            lines.append(f"{payload} vs {r.server}: throughput {ratio:.2f}x (goal >= {need:g}x), "
                         f"p99 {mine.p99:.1f} vs {r.p99:.1f} ms: {'ok' if ok else 'MISS'}")
    return lines
