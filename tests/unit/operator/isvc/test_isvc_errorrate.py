from __future__ import annotations

from forja_operator.inferenceservice.errorrate import Counts, error_rate, parse_counts

TEXT = """\
# HELP forja_requests_total Requests answered, by model, endpoint and HTTP status.
# TYPE forja_requests_total counter
forja_requests_total{endpoint="infer",model="smoke",status="200"} 90.0
forja_requests_total{endpoint="infer",model="smoke",status="400"} 4.0
forja_requests_total{endpoint="infer",model="smoke",status="503"} 6.0
forja_requests_created{endpoint="infer",model="smoke",status="200"} 1.7e9
# TYPE forja_requests_in_flight gauge
forja_requests_in_flight 3.0
"""


def test_parse_counts_only_server_errors_count() -> None:
    assert parse_counts(TEXT) == Counts(total=100.0, errors=6.0)
    assert parse_counts("") == Counts()


def test_error_rate_since_the_baseline() -> None:
    base = {"a": Counts(100, 6)}
    assert error_rate({"a": Counts(150, 16)}, base) == 10 / 50
    assert error_rate({"a": Counts(110, 16)}, base) is None  # too few requests


def test_a_restarted_pod_counts_from_zero() -> None:
    assert error_rate({"a": Counts(40, 20)}, {"a": Counts(100, 0)}) == 0.5
    assert error_rate({"a": Counts(30, 0), "b": Counts(30, 30)}, {}) == 0.5
