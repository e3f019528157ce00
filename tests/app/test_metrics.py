"""EMF lines: namespace, dimensions and names from app.contract; the in-flight gauge at every
interval (0 when idle); per-request latency, time to first token and output tokens."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest

from app import contract
from app.metrics import Metrics
from tests.app.harness import AUTH


def emf_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def test_document_is_embedded_metric_format_with_contract_names():
    out = io.StringIO()
    Metrics("prod-cluster", "gateway-svc", stream=lambda: out).request(12.5, 3.25, 7)
    (doc,) = emf_lines(out.getvalue())
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == contract.METRIC_NAMESPACE
    assert directive["Dimensions"] == [list(contract.METRIC_DIMENSIONS)]
    assert directive["Metrics"] == [
        {"Name": m.name, "Unit": m.unit}
        for m in (contract.REQUEST_LATENCY, contract.TIME_TO_FIRST_TOKEN, contract.OUTPUT_TOKENS)
    ]
    assert isinstance(doc["_aws"]["Timestamp"], int)
    assert abs(doc["_aws"]["Timestamp"] - time.time() * 1000) < 5000
    assert doc["ClusterName"] == "prod-cluster" and doc["ServiceName"] == "gateway-svc"
    assert (doc["RequestLatency"], doc["TimeToFirstToken"], doc["OutputTokens"]) == (12.5, 3.25, 7)


def test_unknown_values_are_left_out():
    out = io.StringIO()
    Metrics("c", "s", stream=lambda: out).request(1.0, None, None)
    (doc,) = emf_lines(out.getvalue())
    assert [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == [
        "RequestLatency"]
    assert "OutputTokens" not in doc


@pytest.mark.slow
def test_in_flight_gauge_every_interval_zero_when_idle(start, double, capfd):
    interval = 0.2
    server, _ = start(metric_interval_seconds=interval, cluster_name="c1", service_name="s1")
    double.set(tokens=10, token_delay=0.1)
    time.sleep(0.5)  # idle
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        assert http.post("/api/generate", json={"prompt": "p"}).status_code == 200
        time.sleep(0.5)  # idle again
        assert http.get("/healthz").status_code == 200
    server.stop()
    docs = emf_lines(capfd.readouterr().out)
    gauges = [d for d in docs if "InFlightRequests" in d]
    values = [d["InFlightRequests"] for d in gauges]
    assert values[0] == 0 and values[-1] == 0
    assert 1 in values
    assert all(d["ClusterName"] == "c1" and d["ServiceName"] == "s1" for d in docs)
    stamps = [d["_aws"]["Timestamp"] for d in gauges]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert max(gaps) <= interval * 1000 + 150
    assert len(gauges) >= 8
    requests = [d for d in docs if "RequestLatency" in d]
    assert len(requests) == 1  # the generation; health checks are not request metrics
    (generation,) = requests
    assert generation["OutputTokens"] == 10
    assert 0 <= generation["TimeToFirstToken"] < generation["RequestLatency"]
    assert generation["RequestLatency"] >= 900  # ten tokens 0.1 s apart
