"""The gateway's hot path beside a bare passthrough: `python -m bench.run --hotpath`.

Three targets in front of the same Ollama protocol double (tests/ollama_double.py, a STAND-IN:
made-up tokens at a set pace, no model):

  direct       the double itself
  passthrough  bench/passthrough.py, aiohttp's server and client relaying bytes (the floor a
               Python proxy reaches here)
  gateway      the image's CMD (bench.gateway.gateway_command), from `tree` (default: this
               checkout; another tree measures other code in the same conditions)

For each route (NDJSON /api/chat, SSE /v1/chat/completions) and concurrency (16, 64 paced
streams, 5 ms/token, 20 tokens), `rounds` rounds of one run per target, the order rotated
each round (drift on a shared machine spreads over all three). Each run: bench.load in its own
process; TTFT p50/p99 and throughput from the client's side, CPU per request of the proxy
process from /proc. Per round the figures are taken against that round's direct run; the
table gives medians over the rounds and their range (the spread), and says "spread > diff"
wherever the rounds' range of a gateway-minus-passthrough difference is wider than the
difference itself (the figure does not resolve it). The load average is printed with each cell:
the machine is shared, and the figures are only as quiet as it was.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench import gateway as gw

DELAY_MS = 5
CONCURRENCIES = (16, 64)
ROUTES = ("ollama", "openai")
TARGETS = ("direct", "passthrough", "gateway")
# The targets: gateway's added TTFT p50 within this of the passthrough's and at most
# ADDED_MAX over direct; throughput ratio at 64 streams; CPU per request over the passthrough's.
WITHIN_PASSTHROUGH_MS = 1.0
ADDED_MAX_MS = 2.0
RATIO_MIN_AT_64 = 0.97
CPU_OVER_PASSTHROUGH_MS = 0.5


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def order(round_index: int) -> tuple[str, ...]:
    shift = round_index % len(TARGETS)
    return TARGETS[shift:] + TARGETS[:shift]


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def cell(runs: list[dict[str, dict]]) -> dict:
    """Per-round figures against that round's direct run, then medians and ranges."""
    out: dict = {"rounds": len(runs)}
    for target in TARGETS:
        per = [r[target] for r in runs]
        out[target] = {key: spread([p[key] for p in per]) for key in (
            "ttft_p50_ms", "ttft_p99_ms", "tokens_per_s", "proxy_cpu_ms_per_request")}
        out[target]["errors"] = sum(p["errors"] for p in per)
    for target in ("passthrough", "gateway"):
        out[f"{target}_added_p50_ms"] = spread(
            [r[target]["ttft_p50_ms"] - r["direct"]["ttft_p50_ms"] for r in runs])
        out[f"{target}_added_p99_ms"] = spread(
            [r[target]["ttft_p99_ms"] - r["direct"]["ttft_p99_ms"] for r in runs])
        out[f"{target}_ratio"] = spread(
            [r[target]["tokens_per_s"] / r["direct"]["tokens_per_s"] for r in runs])
    out["gateway_minus_passthrough_p50_ms"] = spread(
        [r["gateway"]["ttft_p50_ms"] - r["passthrough"]["ttft_p50_ms"] for r in runs])
    out["gateway_minus_passthrough_cpu_ms"] = spread(
        [r["gateway"]["proxy_cpu_ms_per_request"] - r["passthrough"]["proxy_cpu_ms_per_request"]
         for r in runs])
    out["other_cpu_cores"] = statistics.mean(
        r[t]["other_cpu_cores"] for r in runs for t in TARGETS)
    return out


def measure(rounds: int = 3, tree: Path | None = None, quick: bool = False) -> dict:
    tree = (tree or gw.REPO).resolve()
    double_port, pass_port, gate_port = gw.free_port(), gw.free_port(), gw.free_port()
    direct = f"http://127.0.0.1:{double_port}"
    bases = {"direct": direct, "passthrough": f"http://127.0.0.1:{pass_port}",
             "gateway": f"http://127.0.0.1:{gate_port}"}
    keys = {"direct": None, "passthrough": None, "gateway": gw.KEY}
    double = [sys.executable, "-m", "tests.ollama_double", "--port", str(double_port),
              "--tokens", str(gw.TOKENS), "--token-delay", str(DELAY_MS / 1000)]
    passthrough = [sys.executable, "-m", "bench.passthrough", "--port", str(pass_port),
                   "--upstream", direct]
    gateway_env = {
        "OLLAMA_BASE_URL": direct, "GATEWAY_API_KEYS": gw.KEY,
        "GATEWAY_MAX_CONCURRENCY": str(gw.CONCURRENCY_BOUND),
        "GATEWAY_QUEUE_TIMEOUT_SECONDS": "10", "GATEWAY_METRIC_INTERVAL_SECONDS": "30",
    }
    cells = []
    loads = [load_average()]
    with gw.process(double, {}, f"{direct}/api/version") as upstream, \
            gw.process(passthrough, {}, f"{bases['passthrough']}/healthz") as floor, \
            gw.process(gw.gateway_command(gate_port), gateway_env,
                       f"{bases['gateway']}/healthz", cwd=tree) as gateway:
        pids = {"direct": upstream.pid, "passthrough": floor.pid, "gateway": gateway.pid}
        for route in ROUTES:
            for target in TARGETS:  # warm-up, not counted
                gw.load(bases[target], route, 16, 160, keys[target])
            for concurrency in CONCURRENCIES:
                runs = []
                before = load_average()
                for index in range(rounds):
                    results = {}
                    for target in order(index):
                        gw.reset_double(direct, DELAY_MS)
                        result = gw.observed_load(
                            bases[target], route, concurrency,
                            gw.requests_for(DELAY_MS, concurrency, quick), keys[target],
                            upstream.pid, pids[target])
                        # observed_load calls the second process "gateway": here, the proxy.
                        result["proxy_cpu_ms_per_request"] = (
                            0.0 if target == "direct" else result["gateway_cpu_ms_per_request"])
                        results[target] = result
                    runs.append(results)
                after = load_average()
                loads.append(after)
                cells.append({"route": route, "concurrency": concurrency,
                              "load_average": (before, after), **cell(runs)})
    return {"delay_ms": DELAY_MS, "tokens": gw.TOKENS, "tree": str(tree), "rounds": rounds,
            "cpus": os.cpu_count(), "load_average": loads, "cells": cells,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _f(triple: tuple[float, float, float], fmt: str = "+.1f") -> str:
    median, low, high = triple
    return f"{median:{fmt}} [{low:{fmt}},{high:{fmt}}]"


def verdict(figure: tuple[float, float, float], limit: float) -> str:
    """met / MISSED on the median, and whether the rounds' range is wider than the figure."""
    median, low, high = figure
    text = "met" if median <= limit else "MISSED"
    if high - low > abs(median):
        text += " (spread > diff)"
    return text


def report_lines(report: dict) -> list[str]:
    lines = [f"== Hot path: direct vs passthrough vs gateway ({report['tree']}); Ollama protocol "
             f"double (stand-in), {report['delay_ms']} ms/token, {report['tokens']} tokens; "
             f"medians of {report['rounds']} rounds [min,max]; {report['cpus']} CPUs, load "
             "average " + ", ".join(f"{v:.2f}" for v in report["load_average"])]
    header = (f"{'route':<6} {'conc':>4} | {'ttft50 d':>8} {'+pass':>18} {'+gw':>18} "
              f"{'gw-pass':>18} | {'ttft99 d':>8} {'+pass':>7} {'+gw':>7} | "
              f"{'ratio pass':>10} {'ratio gw':>18} | {'cpu ms/req pass':>15} "
              f"{'gw':>18} | {'load':>9}")
    lines += [header, "-" * len(header)]
    for c in report["cells"]:
        d = c["direct"]
        lines.append(
            f"{c['route']:<6} {c['concurrency']:>4} | {d['ttft_p50_ms'][0]:>8.1f} "
            f"{_f(c['passthrough_added_p50_ms']):>18} {_f(c['gateway_added_p50_ms']):>18} "
            f"{_f(c['gateway_minus_passthrough_p50_ms']):>18} | {d['ttft_p99_ms'][0]:>8.1f} "
            f"{c['passthrough_added_p99_ms'][0]:>+7.1f} {c['gateway_added_p99_ms'][0]:>+7.1f} | "
            f"{c['passthrough_ratio'][0]:>10.2f} {_f(c['gateway_ratio'], '.2f'):>18} | "
            f"{c['passthrough']['proxy_cpu_ms_per_request'][0]:>15.2f} "
            f"{_f(c['gateway']['proxy_cpu_ms_per_request'], '.2f'):>18} | "
            f"{c['load_average'][0]:.1f}->{c['load_average'][1]:.1f}")
        errors = {t: c[t]["errors"] for t in TARGETS if c[t]["errors"]}
        if errors:
            lines.append(f"       errors: {errors}")
    lines.append("ttft = time to first token (ms); +pass/+gw = added over direct in the same "
                 "round; gw-pass = gateway minus passthrough; ratio = tok/s over direct's; cpu = "
                 "the proxy process's CPU per request from /proc")
    lines.append("Targets:")
    for c in report["cells"]:
        checks = [
            (f"+gw p50 within {WITHIN_PASSTHROUGH_MS:g} ms of +pass",
             c["gateway_minus_passthrough_p50_ms"], WITHIN_PASSTHROUGH_MS),
            (f"+gw p50 <= {ADDED_MAX_MS:g} ms", c["gateway_added_p50_ms"], ADDED_MAX_MS),
            (f"gw cpu <= pass + {CPU_OVER_PASSTHROUGH_MS:g} ms",
             c["gateway_minus_passthrough_cpu_ms"], CPU_OVER_PASSTHROUGH_MS),
        ]
        parts = []
        for text, figure, limit in checks:
            parts.append(f"{text}: {figure[0]:+.2f} {verdict(figure, limit)}")
        if c["concurrency"] == 64:
            ratio = c["gateway_ratio"][0]
            parts.append(f"ratio {ratio:.2f} >= {RATIO_MIN_AT_64} "
                         f"{'met' if ratio >= RATIO_MIN_AT_64 else 'MISSED'}")
        lines.append(f"  {c['route']:<6} {c['concurrency']:>2}: " + "; ".join(parts))
    return lines


def write(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
