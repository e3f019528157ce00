"""Gateway overhead on a real model's token stream: llama.cpp with gemma3-270m, not Ollama.

The double's rows (bench/gateway.py) measure the gateway's plumbing on made-up tokens at a set
pace. This row puts a real model behind it: llama.cpp's own server (the xllamacpp wheel) serving
gemma-3-270m on CPU (tests/llamacpp.py: one slot, one thread), and the same streaming chat on
/v1/chat/completions (SSE) directly against llama.cpp and through the gateway (the image's CMD,
as for the double), one stream at a time (the server has one slot), in rounds of direct,
gateway, gateway, direct, each run in its own load-generator process (bench.load).

Every request asks for exactly TOKENS tokens (llama.cpp's `ignore_eos`) with the prompt not
cached (`cache_prompt: false`: each request evaluates its whole prompt, so the time to first
token is a real one; llama.cpp sends its first event with the first token). Each request has
its own connection (`Connection: close`) and PAUSE seconds after the one before, on both sides:
llama.cpp's HTTP server sometimes closes a connection just after a streamed answer, and a
request sent on it in that moment fails (5 of 30 back-to-back streams on one keep-alive
connection, directly; none with 50 ms between them). Through the gateway the same happens on
its pooled upstream connection: 1 of 80 back-to-back streams got a 502 (`upstream_broken`),
none of 80 with 0.1 s between them. Whether Ollama's server does the same is not measured (no
Ollama here); the row measures the gateway's overhead, not that race, and any error that still
happens is printed.
Throughput is per stream: TOKENS over the total latency of a request. Figures are medians over
the runs of each side; the ratio's range is over the rounds. On two cores the
gateway, the load generator and llama.cpp share the machine: the gateway's CPU is part of what
is measured, and "other cores" says how busy the rest of the machine was.
"""

from __future__ import annotations

import json
import statistics
import time

from bench.gateway import (
    KEY,
    ORDER,
    free_port,
    gateway_command,
    load,
    observed_load,
    peak_rss_mb,
    process,
)

TOKENS = 32
REQUESTS = 3  # per run, one after the other
PAUSE = 0.1  # seconds between two requests (see above)
ROUTE = "openai"


def load_options(model: str) -> list[str]:
    body = {"model": model, "max_tokens": TOKENS, "ignore_eos": True, "cache_prompt": False}
    return ["--payload", json.dumps(body), "--close", "--pause", str(PAUSE)]


def label() -> str:
    from tests.llamacpp import LABEL

    return LABEL


def measure(rounds: int = 3, requests: int = REQUESTS) -> dict:
    from tests.llamacpp import LlamaServer, model_path

    started = time.monotonic()
    with LlamaServer(model_path()) as server:
        gateway_port = free_port()
        gateway_env = {
            "OLLAMA_BASE_URL": server.url,
            "GATEWAY_API_KEYS": KEY,
            "GATEWAY_MODELS": server.alias,
            "GATEWAY_CONTEXT_TOKENS": str(server.slot_context()),
            "GATEWAY_MAX_CONCURRENCY": str(len(server.slots())),
            "GATEWAY_METRIC_INTERVAL_SECONDS": "30",
        }
        bases = {"direct": server.url, "gateway": f"http://127.0.0.1:{gateway_port}"}
        keys = {"direct": None, "gateway": KEY}
        options = load_options(server.alias)
        with process(gateway_command(gateway_port), gateway_env,
                     f"{bases['gateway']}/healthz") as gateway:
            for target in ("direct", "gateway"):  # warm-up, not counted
                load(bases[target], ROUTE, 1, 1, keys[target], options)
            runs = [(target, observed_load(bases[target], ROUTE, 1, requests, keys[target],
                                           server.pid, gateway.pid, options))
                    for target in ORDER * rounds]
            rss = peak_rss_mb(gateway.pid)
    return summarize(runs, requests, rss, time.monotonic() - started)


def _tokens_per_s(run: dict) -> float:
    # Exact: every answer has TOKENS tokens (ignore_eos), so no counting of events; over the
    # request's total latency (the pauses between requests are not in it).
    return TOKENS / run["total_p50_ms"] * 1000 if run["total_p50_ms"] > 0 else 0.0


def summarize(runs: list[tuple[str, dict]], requests: int, rss_mb: float,
              seconds: float) -> dict:
    side = {t: [run for target, run in runs if target == t] for t in ("direct", "gateway")}

    def median(target: str, key: str) -> float:
        return statistics.median(run[key] for run in side[target])

    rates = {t: statistics.median(_tokens_per_s(run) for run in side[t]) for t in side}

    def cpu_per_request(target: str, key: str) -> float:
        # Over all the runs of a side: /proc counts in clock ticks (10 ms), too coarse per run.
        done = [max(run["requests"] + run["errors"], 1) for run in side[target]]
        spent = sum(run[key] * n for run, n in zip(side[target], done, strict=True))
        return spent / sum(done)

    per_round = []
    for start in range(0, len(runs), len(ORDER)):
        chunk = runs[start:start + len(ORDER)]
        rd = [_tokens_per_s(r) for t, r in chunk if t == "direct"]
        rg = [_tokens_per_s(r) for t, r in chunk if t == "gateway"]
        per_round.append(statistics.mean(rg) / statistics.mean(rd))
    return {
        "upstream": label(), "route": ROUTE, "concurrency": 1, "tokens": TOKENS,
        "requests_per_run": requests, "rounds": len(per_round), "seconds": seconds,
        "direct": {"ttft_ms": median("direct", "ttft_p50_ms"),
                   "total_ms": median("direct", "total_p50_ms"),
                   "tokens_per_s": rates["direct"],
                   "errors": sum(r["errors"] for r in side["direct"])},
        "gateway": {"ttft_ms": median("gateway", "ttft_p50_ms"),
                    "total_ms": median("gateway", "total_p50_ms"),
                    "tokens_per_s": rates["gateway"],
                    "errors": sum(r["errors"] for r in side["gateway"])},
        "throughput_ratio": rates["gateway"] / rates["direct"],
        "throughput_ratio_rounds": per_round,
        "added_ttft_ms": median("gateway", "ttft_p50_ms") - median("direct", "ttft_p50_ms"),
        "added_total_ms": median("gateway", "total_p50_ms") - median("direct", "total_p50_ms"),
        "gateway_cpu_ms_per_request": cpu_per_request("gateway", "gateway_cpu_ms_per_request"),
        "upstream_cpu_ms_per_request": cpu_per_request("direct", "double_cpu_ms_per_request"),
        # llama.cpp's pace once generating: first token to last, direct
        "ms_per_token": (median("direct", "total_p50_ms") - median("direct", "ttft_p50_ms"))
        / (TOKENS - 1),
        "gateway_peak_rss_mb": rss_mb,
        "other_cpu_cores": statistics.mean(r["other_cpu_cores"] for _, r in runs),
    }


def describe(row: dict) -> str:
    return (f"real model: {row['upstream']} (CPU, 1 thread, 1 slot); {row['tokens']} "
            f"tokens/request (ignore_eos), prompt not cached, 1 stream, {row['requests_per_run']}"
            f" requests/run, one connection each, {PAUSE:g} s apart; medians over "
            f"{row['rounds']} round(s) of direct, gateway, gateway, direct "
            f"({row['seconds']:.0f} s in all)")


def row_line(row: dict) -> str:
    """The row, in the columns of the double's table (bench.run.print_gateway)."""
    d, g = row["direct"], row["gateway"]
    spread = row["throughput_ratio_rounds"]
    rounds = f"{min(spread):.2f}-{max(spread):.2f}" if len(spread) > 1 else ""
    ms_per_token = row["ms_per_token"]
    req_d = d["tokens_per_s"] / row["tokens"]
    req_g = g["tokens_per_s"] / row["tokens"]
    return (f"{ms_per_token:>6.0f} {'gemma3':<6} {1:>4} | {req_d:>7.2f} {req_g:>7.2f} | "
            f"{d['tokens_per_s']:>7.1f} {g['tokens_per_s']:>7.1f} "
            f"{row['throughput_ratio']:>5.2f} {rounds:<9} | "
            f"{d['ttft_ms']:>8.1f} {row['added_ttft_ms']:>+5.1f} {'':>8} {'':>5} | "
            f"{d['total_ms']:>7.1f} {g['total_ms']:>6.1f}")



def notes(row: dict) -> list[str]:
    errors = row["direct"]["errors"] + row["gateway"]["errors"]
    lines = [
        f"gemma3 = {describe(row)}; ms/tok = llama.cpp's pace from first token to last (direct); "
        "ttft = first body byte (its first event comes with the first token); tok/s = "
        "tokens/request / total latency, per stream; medians, not means",
        f"  gateway CPU {row['gateway_cpu_ms_per_request']:.2f} ms/request, peak RSS "
        f"{row['gateway_peak_rss_mb']:.0f} MB; llama.cpp CPU "
        f"{row['upstream_cpu_ms_per_request']:.0f} ms/request; other cores "
        f"{row['other_cpu_cores']:.2f} (the rest of the machine; a busy one makes this row "
        "noisy)",
    ]
    if errors:
        lines.append(f"  errors: direct {row['direct']['errors']}, gateway "
                     f"{row['gateway']['errors']}")
    return lines
