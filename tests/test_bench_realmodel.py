"""The real-model benchmark row's arithmetic (bench/realmodel.py) and bench.load's options,
on made-up runs: no server, no model (the row itself is measured by `make bench`)."""

from __future__ import annotations

import pytest

from bench import load, realmodel
from tests.llamacpp import LABEL


def _run(ttft: float, total: float, gateway_cpu: float = 0.0, upstream_cpu: float = 0.0,
         requests: int = 3) -> dict:
    return {"requests": requests, "errors": 0, "ttft_p50_ms": ttft, "total_p50_ms": total,
            "gateway_cpu_ms_per_request": gateway_cpu, "double_cpu_ms_per_request": upstream_cpu,
            "other_cpu_cores": 0.5}


def test_medians_ratio_and_cpu_come_from_the_runs_of_each_side():
    tokens = realmodel.TOKENS
    runs = [("direct", _run(100, 1000, upstream_cpu=700)),
            ("gateway", _run(110, 1100, gateway_cpu=10, requests=1)),
            ("gateway", _run(130, 1250, gateway_cpu=30, requests=3)),
            ("direct", _run(900, 1020, upstream_cpu=900))]
    row = realmodel.summarize(runs, 3, 60.0, 10.0)
    assert row["direct"]["ttft_ms"] == 500 and row["gateway"]["ttft_ms"] == 120
    assert row["added_ttft_ms"] == -380
    assert row["direct"]["tokens_per_s"] == pytest.approx(
        (tokens / 1.0 + tokens / 1.02) / 2)
    assert row["throughput_ratio"] == pytest.approx(
        row["gateway"]["tokens_per_s"] / row["direct"]["tokens_per_s"])
    assert row["throughput_ratio_rounds"] == [pytest.approx(row["throughput_ratio"])]
    # CPU per request over all of a side's requests (1 at 10 ms, 3 at 30 ms), not per run
    assert row["gateway_cpu_ms_per_request"] == pytest.approx((10 + 3 * 30) / 4)
    assert row["upstream"] == LABEL and LABEL in realmodel.describe(row)
    assert row["ms_per_token"] == pytest.approx((1010 - 500) / (tokens - 1))
    line = realmodel.row_line(row)
    assert line.split("|")[0].split()[1:] == ["gemma3", "1"]


def test_the_payload_is_merged_into_the_body_and_must_be_an_object(capsys):
    path, body = load.request_for("openai", {"max_tokens": 4, "model": "m"})
    assert path == "/v1/chat/completions" and body["max_tokens"] == 4 and body["model"] == "m"
    assert body["stream"] is True and load.ROUTES["openai"][1]["model"] == load.MODEL
    with pytest.raises(SystemExit):
        load.main(["--base", "http://127.0.0.1:1", "--route", "openai", "--concurrency", "1",
                   "--requests", "1", "--payload", "[1]"])
    assert "--payload must be a JSON object" in capsys.readouterr().err
