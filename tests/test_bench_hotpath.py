"""The hot-path comparison's arithmetic (bench/hotpath.py), on made-up runs: no server."""

from __future__ import annotations

import pytest

from bench import hotpath


def _run(ttft50: float, tokens_per_s: float, cpu: float = 0.0) -> dict:
    return {"ttft_p50_ms": ttft50, "ttft_p99_ms": ttft50 * 2, "tokens_per_s": tokens_per_s,
            "proxy_cpu_ms_per_request": cpu, "errors": 0, "other_cpu_cores": 0.1}


def test_every_round_runs_each_target_once_in_a_rotated_order():
    orders = [hotpath.order(i) for i in range(len(hotpath.TARGETS))]
    assert all(sorted(o) == sorted(hotpath.TARGETS) for o in orders)
    assert len({o[0] for o in orders}) == len(hotpath.TARGETS)  # each goes first once


def test_added_figures_are_per_round_against_that_rounds_direct_run():
    # Direct drifts from 1 to 5 ms over the rounds; the gateway adds 2 ms, the passthrough 1.
    runs = [{"direct": _run(d, 1000), "passthrough": _run(d + 1, 990, 1.0),
             "gateway": _run(d + 2, 980, 1.4)} for d in (1.0, 3.0, 5.0)]
    cell = hotpath.cell(runs)
    assert cell["gateway_added_p50_ms"] == pytest.approx((2.0, 2.0, 2.0))
    assert cell["passthrough_added_p50_ms"] == pytest.approx((1.0, 1.0, 1.0))
    assert cell["gateway_minus_passthrough_p50_ms"] == pytest.approx((1.0, 1.0, 1.0))
    assert cell["gateway_ratio"] == pytest.approx((0.98, 0.98, 0.98))
    assert cell["gateway_minus_passthrough_cpu_ms"] == pytest.approx((0.4, 0.4, 0.4))
    assert cell["direct"]["ttft_p50_ms"] == (3.0, 1.0, 5.0)  # median, min, max


@pytest.mark.parametrize(("figure", "limit", "expected"), [
    ((0.5, 0.4, 0.6), 1.0, "met"),
    ((1.5, 1.4, 1.6), 1.0, "MISSED"),
    ((0.5, -1.0, 2.0), 1.0, "met (spread > diff)"),
    ((3.0, 0.0, 4.0), 1.0, "MISSED (spread > diff)"),
])
def test_a_figure_is_flagged_when_its_rounds_spread_wider_than_itself(figure, limit, expected):
    assert hotpath.verdict(figure, limit) == expected


def test_the_report_names_each_target_and_the_load_average():
    runs = [{"direct": _run(1.0, 1000), "passthrough": _run(2.0, 990, 1.0),
             "gateway": _run(2.5, 980, 1.2)}] * 3
    cells = [{"route": r, "concurrency": c, "load_average": (1.0, 1.5), **hotpath.cell(runs)}
             for r in hotpath.ROUTES for c in hotpath.CONCURRENCIES]
    report = {"tree": "/x", "delay_ms": 5, "tokens": 20, "rounds": 3, "cpus": 2,
              "load_average": [1.0, 1.5], "cells": cells}
    text = "\n".join(hotpath.report_lines(report))
    assert "load average 1.00, 1.50" in text
    assert text.count("ratio 0.98 >= 0.97 met") == len(hotpath.ROUTES)  # at 64 streams only
    assert text.count("+gw p50 within 1 ms of +pass: +0.50 met") == len(cells)
