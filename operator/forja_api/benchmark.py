"""What a ModelVersion's benchmark pod reports: shared by the server's benchmark program
(``python -m forja_server.benchmark URI SHA256 FORMAT``) and the operator that reads it.

The program writes one :class:`BenchmarkReport` as compact JSON to the termination
message (at most :data:`~forja_api.contract.MAX_TERMINATION_MESSAGE_BYTES`) and exits
with :data:`EXIT_OK`, :data:`EXIT_UNSUPPORTED` (this model cannot be benchmarked: not
retried) or any other code (a failure the operator retries a bounded number of times).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "BENCH_BATCH_ENV",
    "BENCH_REQUESTS_ENV",
    "EXIT_OK",
    "EXIT_UNSUPPORTED",
    "BenchmarkReport",
    "Figures",
]

EXIT_OK = 0
EXIT_UNSUPPORTED = 69
"""EX_UNAVAILABLE: the format has no runtime here, or inputs cannot be generated."""

BENCH_REQUESTS_ENV = "FORJA_BENCH_REQUESTS"
"""How many batch-1 requests the latency figures are taken over."""
BENCH_BATCH_ENV = "FORJA_BENCH_BATCH"
"""The batch size throughput is measured at (the serving default's max batch)."""


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class Figures(_Wire):
    """One model's figures."""

    p50_ms: float = Field(ge=0)
    """Median latency of one forward pass at batch 1, milliseconds."""
    p99_ms: float = Field(ge=0)
    """99th percentile of the same, milliseconds."""
    throughput: float = Field(ge=0)
    """Samples per second at batch :attr:`batch_size`."""
    batch_size: int = Field(ge=1)
    """The batch size throughput was measured at."""
    requests: int = Field(ge=1)
    """How many batch-1 passes p50 and p99 are taken over."""
    load_seconds: float = Field(ge=0)
    """Fetch, verify and load of the artifact, seconds."""


class BenchmarkReport(_Wire):
    """The termination message of a benchmark pod."""

    ok: bool
    reason: str | None = None
    message: str | None = Field(default=None, max_length=1024)
    figures: Figures | None = None
    """The model's figures; set when ``ok``."""
    peak_memory_mib: float | None = Field(default=None, ge=0)
    """Peak resident memory of the benchmark process, MiB (getrusage)."""
    runtime: str | None = None
    """The engine that ran it (onnxruntime, litert, torch)."""
