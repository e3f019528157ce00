"""Gateway overhead: the Ollama protocol double alone vs the gateway in front of it.

The upstream is tests/ollama_double.py, a STAND-IN that streams made-up tokens at a set pace;
no model runs here, so these figures describe the gateway's plumbing, not inference.

For each per-token delay, route (Ollama-native /api/chat, OpenAI /v1/chat/completions) and
concurrency, the same bounded load runs against the double directly and through the gateway,
in the order direct, gateway, gateway, direct (drift on a shared 2-core machine cancels out),
each in its own load-generator process. The gateway runs as the image's CMD would (uvicorn,
one process) with its concurrency bound raised to GATEWAY_MAX_CONCURRENCY for the run.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdefghijklmnopqrstuv"
CONCURRENCY_BOUND = 128  # raised from the production default for the run (said in the table)
TOKENS = 20
REQUESTS = {1: 40, 16: 320, 64: 640}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback URL we built)
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def gateway_command(port: int) -> list[str]:
    """The image's CMD (app/Dockerfile), on 127.0.0.1:port instead of 0.0.0.0:8000."""
    dockerfile = (REPO / "app" / "Dockerfile").read_text()
    line = [row for row in dockerfile.splitlines() if row.startswith("CMD [")][-1]
    command = json.loads(line[len("CMD "):])
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    command[0] = str(Path(sys.executable).parent / command[0])
    return command


@contextmanager
def process(command: list[str], env: dict, ready_url: str):
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(ready_url)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(base: str, route: str, concurrency: int, key: str | None) -> dict:
    command = [sys.executable, "-m", "bench.load", "--base", base, "--route", route,
               "--concurrency", str(concurrency), "--requests", str(REQUESTS[concurrency]),
               "--deadline", "90"]
    if key:
        command += ["--key", key]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180,
                            check=True)
    return json.loads(result.stdout)


def mean_of(runs: list[dict]) -> dict:
    return {key: statistics.mean(run[key] for run in runs) for key in runs[0]}


def measure(delays_ms=(0, 5), concurrencies=(1, 16, 64), routes=("ollama", "openai")) -> list[dict]:
    rows = []
    for delay in delays_ms:
        double_port, gateway_port = free_port(), free_port()
        double = [sys.executable, "-m", "tests.ollama_double", "--port", str(double_port),
                  "--tokens", str(TOKENS), "--token-delay", str(delay / 1000)]
        gateway_env = {
            "OLLAMA_BASE_URL": f"http://127.0.0.1:{double_port}",
            "GATEWAY_API_KEYS": KEY,
            "GATEWAY_MAX_CONCURRENCY": str(CONCURRENCY_BOUND),
            "GATEWAY_QUEUE_TIMEOUT_SECONDS": "10",
            "GATEWAY_METRIC_INTERVAL_SECONDS": "30",
        }
        direct_base = f"http://127.0.0.1:{double_port}"
        gateway_base = f"http://127.0.0.1:{gateway_port}"
        with process(double, {}, f"{direct_base}/api/version"), \
                process(gateway_command(gateway_port), gateway_env,
                        f"{gateway_base}/healthz") as gateway:
            for route in routes:
                load(direct_base, route, 16, None)  # warm-up, not counted
                load(gateway_base, route, 16, KEY)
                for concurrency in concurrencies:
                    direct, through = [], []
                    cpu = 0.0
                    for target in ("direct", "gateway", "gateway", "direct"):
                        if target == "direct":
                            direct.append(load(direct_base, route, concurrency, None))
                        else:
                            before = cpu_seconds(gateway.pid)
                            run = load(gateway_base, route, concurrency, KEY)
                            cpu += (cpu_seconds(gateway.pid) - before) / max(run["requests"], 1)
                            through.append(run)
                    d, g = mean_of(direct), mean_of(through)
                    rows.append({
                        "delay_ms": delay, "route": route, "concurrency": concurrency,
                        "direct": d, "gateway": g,
                        "throughput_ratio": g["tokens_per_s"] / d["tokens_per_s"],
                        "added_ttft_p50_ms": g["ttft_p50_ms"] - d["ttft_p50_ms"],
                        "added_ttft_p99_ms": g["ttft_p99_ms"] - d["ttft_p99_ms"],
                        "gateway_cpu_ms_per_request": cpu / 2 * 1000,
                        "gateway_peak_rss_mb": peak_rss_mb(gateway.pid),
                    })
    return rows


def describe() -> str:
    return (f"upstream: Ollama protocol double (stand-in, no model), {TOKENS} tokens/request; "
            f"gateway concurrency bound raised to {CONCURRENCY_BOUND} for the run; "
            f"gateway command: {shlex.join(gateway_command(8000)[1:])}")
