"""Gateway overhead: the Ollama protocol double alone vs the gateway in front of it.

The upstream is tests/ollama_double.py, a STAND-IN that streams made-up tokens at a set pace;
no model runs here, so these figures describe the gateway's plumbing, not inference.

For each per-token delay, route (Ollama-native /api/chat, OpenAI /v1/chat/completions) and
concurrency, the same bounded load runs against the double directly and through the gateway,
in rounds of direct, gateway, gateway, direct (drift on a shared 2-core machine cancels out),
each run in its own load-generator process (bench.load). The gateway runs as the image's CMD
would (uvicorn, one process) with its concurrency bound raised to CONCURRENCY_BOUND for the run.
The double's request records are cleared before every run (see reset_double).

Besides the client-side figures, every run records what each process spent: the gateway's and
the double's CPU per request (from /proc), the load generator's own CPU per request, and the
CPU the rest of the machine used meanwhile ("other", in cores: other jobs on a shared machine
are the main source of noise, and a run with a high figure there deserves less trust).

profile_dir: after the measured runs of each route, one more gateway run at the highest
concurrency, not counted, with py-spy sampling the gateway (collapsed stacks written there).
"""

from __future__ import annotations

import collections
import json
import os
import resource
import shlex
import shutil
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
# Requests per run. Paced (a per-token delay): ~4 s per run, at least 30 requests per stream at
# 16 and 64, so the first wave (every stream starting at once) does not dominate. Unpaced
# (0 ms/token): as fast as the processes go, so more requests for a run of a second or more.
# --quick: half as many.
REQUESTS = {1: 40, 16: 640, 64: 1920}
UNPACED_REQUESTS = {1: 400, 16: 1600, 64: 3200}


def requests_for(delay_ms: float, concurrency: int, quick: bool = False) -> int:
    table = REQUESTS if delay_ms else UNPACED_REQUESTS
    count = table.get(concurrency, 30 * concurrency)
    return max(concurrency, count // 2) if quick else count
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ORDER = ("direct", "gateway", "gateway", "direct")


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
def process(command: list[str], env: dict, ready_url: str, cwd: Path = REPO):
    proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env},
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


def host_busy_seconds() -> float:
    """CPU time the whole machine spent busy (every core, every process) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children (bench.load)
    return usage.ru_utime + usage.ru_stime


def load_command(base: str, route: str, concurrency: int, requests: int,
                 key: str | None, options: list[str] | None = None) -> list[str]:
    """options: further bench.load options (the real-model row's, bench/realmodel.py)."""
    command = [sys.executable, "-m", "bench.load", "--base", base, "--route", route,
               "--concurrency", str(concurrency), "--requests", str(requests),
               "--deadline", "90", *(options or [])]
    return command + (["--key", key] if key else [])


def load(base: str, route: str, concurrency: int, requests: int, key: str | None,
         options: list[str] | None = None) -> dict:
    result = subprocess.run(load_command(base, route, concurrency, requests, key, options),
                            cwd=REPO, capture_output=True, text=True, timeout=180, check=True)
    return json.loads(result.stdout)


def reset_double(double_base: str, delay_ms: float) -> None:
    """Clear the double's request records (kept for tests, they pile up over a benchmark and
    make its garbage collections longer and longer: drift), keeping its pace."""
    knobs = json.dumps({"tokens": TOKENS, "token_delay": delay_ms / 1000}).encode()
    request = urllib.request.Request(  # noqa: S310 (a loopback URL we built)
        f"{double_base}/_double/reset", data=knobs, method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def observed_load(base: str, route: str, concurrency: int, requests: int, key: str | None,
                  double_pid: int, gateway_pid: int, options: list[str] | None = None) -> dict:
    """One load run, plus what the upstream (the double, or llama.cpp), the gateway and the
    rest of the machine spent."""
    before = (cpu_seconds(double_pid), cpu_seconds(gateway_pid), host_busy_seconds(),
              children_cpu_seconds(), time.monotonic())
    result = load(base, route, concurrency, requests, key, options)
    after = (cpu_seconds(double_pid), cpu_seconds(gateway_pid), host_busy_seconds(),
             children_cpu_seconds(), time.monotonic())
    double, gateway, host, children, wall = (b - a for a, b in zip(before, after, strict=True))
    done = max(result["requests"] + result["errors"], 1)
    result["double_cpu_ms_per_request"] = double / done * 1000
    result["gateway_cpu_ms_per_request"] = gateway / done * 1000
    result["other_cpu_cores"] = max(0.0, host - double - gateway - children) / wall
    return result


def mean_of(runs: list[dict]) -> dict:
    return {key: statistics.mean(run[key] for run in runs) for key in runs[0]}


def summarize(delay: int, route: str, concurrency: int, runs: list[tuple[str, dict]],
              gateway_pid: int) -> dict:
    direct = [run for target, run in runs if target == "direct"]
    through = [run for target, run in runs if target == "gateway"]
    d, g = mean_of(direct), mean_of(through)
    # One ratio per round of four runs (direct, gateway, gateway, direct): the spread says how
    # much the machine moved under the measurement.
    per_round = []
    for start in range(0, len(runs), len(ORDER)):
        chunk = runs[start:start + len(ORDER)]
        rd = [r["tokens_per_s"] for t, r in chunk if t == "direct"]
        rg = [r["tokens_per_s"] for t, r in chunk if t == "gateway"]
        per_round.append(statistics.mean(rg) / statistics.mean(rd))
    return {
        "delay_ms": delay, "route": route, "concurrency": concurrency,
        "direct": d, "gateway": g, "rounds": len(per_round),
        "throughput_ratio": g["tokens_per_s"] / d["tokens_per_s"],
        "throughput_ratio_rounds": per_round,
        "added_ttft_p50_ms": g["ttft_p50_ms"] - d["ttft_p50_ms"],
        "added_ttft_p99_ms": g["ttft_p99_ms"] - d["ttft_p99_ms"],
        "added_total_p50_ms": g["total_p50_ms"] - d["total_p50_ms"],
        "gateway_cpu_ms_per_request": g["gateway_cpu_ms_per_request"],
        "gateway_peak_rss_mb": peak_rss_mb(gateway_pid),
        "other_cpu_cores": statistics.mean(r["other_cpu_cores"] for _, r in runs),
    }


def profile(base: str, route: str, concurrency: int, requests: int, gateway_pid: int,
            out: Path) -> dict:
    """One uncounted gateway run under py-spy; collapsed stacks to `out`, top frames back."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pinned in requirements-dev.txt: make venv)")
    out.parent.mkdir(parents=True, exist_ok=True)
    sampler = subprocess.Popen([spy, "record", "--pid", str(gateway_pid), "--rate", "250",
                                "--format", "raw", "--output", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # py-spy attaches
        result = load(base, route, concurrency, requests, KEY)
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = sampler.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            _, err = sampler.communicate()
    if not out.is_file():
        raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace').strip()}")
    return {"file": str(out.relative_to(REPO)), "load": result, **top_frames(out)}


def top_frames(collapsed: Path, limit: int = 12) -> dict:
    """Self and inclusive sample shares per frame, from py-spy's collapsed-stack output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    share = [(f, n / total) for f, n in own.most_common(limit)] if total else []
    # Inclusive: the gateway's own code only (app/), where a change here would act.
    incl = [(f, n / total) for f, n in inclusive.most_common() if "(app/" in f][:limit]
    return {"samples": total, "self": share, "inclusive": incl}


def measure(delays_ms=(0, 5), concurrencies=(1, 16, 64), routes=("ollama", "openai"),
            rounds: int = 2, quick: bool = False, profile_dir: Path | None = None) -> list[dict]:
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
        bases = {"direct": f"http://127.0.0.1:{double_port}",
                 "gateway": f"http://127.0.0.1:{gateway_port}"}
        keys = {"direct": None, "gateway": KEY}
        with process(double, {}, f"{bases['direct']}/api/version") as upstream, \
                process(gateway_command(gateway_port), gateway_env,
                        f"{bases['gateway']}/healthz") as gateway:
            for route in routes:
                for target in ("direct", "gateway"):  # warm-up, not counted
                    load(bases[target], route, 16, 160, keys[target])
                for concurrency in concurrencies:
                    runs = []
                    for target in ORDER * rounds:
                        reset_double(bases["direct"], delay)
                        runs.append((target, observed_load(
                            bases[target], route, concurrency,
                            requests_for(delay, concurrency, quick), keys[target],
                            upstream.pid, gateway.pid)))
                    rows.append(summarize(delay, route, concurrency, runs, gateway.pid))
                if profile_dir is not None:
                    top = max(concurrencies)
                    out = profile_dir / f"profile-{delay}ms-{route}-{top}.txt"
                    rows[-1]["profile"] = profile(bases["gateway"], route, top,
                                                  requests_for(delay, top), gateway.pid, out)
    return rows


def describe() -> str:
    return (f"upstream: Ollama protocol double (stand-in, no model), {TOKENS} tokens/request; "
            f"gateway concurrency bound raised to {CONCURRENCY_BOUND} for the run; "
            f"gateway command: {shlex.join(gateway_command(8000)[1:])}")
