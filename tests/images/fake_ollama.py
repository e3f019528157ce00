"""A stand-in `ollama` CLI for process tests of ollama/entrypoint.sh and ollama/pull-model.sh,
and the `ollama` executable of the stand-in base image (tests/images/standin_ollama/).

NOT OLLAMA. It answers the few subcommands the scripts and the health check call, the way the
real CLI does for them (ollama/ollama@9330bb912079ed1ba3c384cc762728700c9e3691, tag v0.20.6),
so the scripts' control flow (start, wait, load, health, signals, exit status, clean-up) runs for
real without the Ollama binary, a GPU or model weights:

- `serve`: as cmd/cmd.go RunServer does, first writes a key pair under $HOME/.ollama
  (initializeKeypair: serve fails with "could not create directory" where HOME is not
  writable), then makes $OLLAMA_MODELS/blobs (manifest/paths.go BlobsPath, called by
  server/routes.go Serve: fails on a read-only root where the directory was not baked), then
  listens on the host:port of $OLLAMA_HOST (net.Listen(envconfig.Host().Host): 0.0.0.0 means
  every interface of the namespace). What answers there is the Ollama protocol double
  (tests/ollama_double.py), listing the models baked under $OLLAMA_MODELS (the real server
  reads its manifests) and /api/ps listing nothing until a model is "run". SIGTERM stops it
  with status 0 (RunServer returns nil on http.ErrServerClosed).
- `list`, `ps`: GET /api/tags, /api/ps on envconfig.ConnectableHost (0.0.0.0 -> 127.0.0.1);
  exit 1 when the server does not answer.
- `run MODEL PROMPT`: fails as the real CLI does offline when the server does not list MODEL
  (it would try to pull it); else POST /api/generate, then tells the double the model is loaded.
- `pull MODEL`: a client of the server (it must answer), writes a stand-in blob and a manifest
  under $OLLAMA_MODELS in Ollama's layout; `show MODEL` succeeds when both are there.

A non-loopback listen address is refused unless FAKE_OLLAMA_ANY_ADDRESS=1 (only the stand-in
image sets it, where the address is the container's own network namespace): on the host the
double stays on 127.0.0.1. Knobs for failure paths: FAKE_OLLAMA_RUN_FAIL=1 makes `run` fail;
FAKE_OLLAMA_RUN_SECONDS=N makes it take N seconds first (a slow model load);
FAKE_OLLAMA_SERVE_FAIL=1 makes `serve` exit 1.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PORT = "11434"
# What the stand-in writes as a model layer; nothing reads it as weights.
BLOB = b"NOT A MODEL: stand-in layer written by tests/images/fake_ollama.py\n"


def listen_address() -> tuple[str, int]:
    """envconfig.Host(): OLLAMA_HOST as [scheme://]host[:port], default 127.0.0.1:11434."""
    value = os.environ.get("OLLAMA_HOST", "").strip()
    value = value.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        host, port = value, DEFAULT_PORT
    return host.strip("[]") or "127.0.0.1", int(port)


def base_url() -> str:
    host, port = listen_address()
    if ipaddress.ip_address(host).is_unspecified:  # envconfig.ConnectableHost
        host = "127.0.0.1" if ipaddress.ip_address(host).version == 4 else "::1"
    return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


def call(method: str, path: str, body: dict | None = None, timeout: float = 5.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url() + path, data=data, method=method,  # noqa: S310 (loopback only)
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def models_dir() -> Path:
    """envconfig.Models(): $OLLAMA_MODELS, else $HOME/.ollama/models."""
    value = os.environ.get("OLLAMA_MODELS")
    return Path(value) if value else Path(os.environ["HOME"]) / ".ollama" / "models"


def normalized(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


def manifest(model: str, root: Path | None = None) -> Path:
    name, _, tag = normalized(model).partition(":")
    return ((root or models_dir()) / "manifests" / "registry.ollama.ai" / "library" / name / tag)


def bake(model: str, root: Path | None = None) -> Path:
    """Write a model the way a pull leaves it: blobs/sha256-<hex> and the manifest naming it."""
    root = root or models_dir()
    digest = hashlib.sha256(BLOB).hexdigest()
    blob = root / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(BLOB)
    path = manifest(model, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
             "size": len(BLOB)}
    path.write_text(json.dumps({"schemaVersion": 2, "layers": [layer]}))
    return path


def baked_models(root: Path | None = None) -> list[str]:
    library = (root or models_dir()) / "manifests" / "registry.ollama.ai" / "library"
    if not library.is_dir():
        return []
    return sorted(f"{tag.parent.name}:{tag.name}" for tag in library.glob("*/*") if tag.is_file())


def complete(model: str) -> bool:
    path = manifest(model)
    if not path.is_file():
        return False
    layers = json.loads(path.read_text()).get("layers", [])
    return all((models_dir() / "blobs" / layer["digest"].replace(":", "-")).is_file()
               for layer in layers)


def serve() -> int:
    if os.environ.get("FAKE_OLLAMA_SERVE_FAIL"):
        print("Error: fake serve told to fail", file=sys.stderr)
        return 1
    host, port = listen_address()
    if not ipaddress.ip_address(host).is_loopback and os.environ.get(
            "FAKE_OLLAMA_ANY_ADDRESS") != "1":
        print(f"Error: the stand-in listens on loopback only here, not {host} "
              "(FAKE_OLLAMA_ANY_ADDRESS=1 inside a container)", file=sys.stderr)
        return 1
    key = Path(os.environ["HOME"]) / ".ollama" / "id_ed25519"
    try:
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text("stand-in private key, written where real `ollama serve` writes its own\n")
        (models_dir() / "blobs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"Error: could not create directory {exc}", file=sys.stderr)
        return 1
    import asyncio  # here: the other subcommands are health check probes, run every interval
    import signal

    sys.path.insert(0, str(REPO))
    from aiohttp import web

    from tests.ollama_double import OllamaDouble

    async def run_server() -> None:
        double = OllamaDouble(models=tuple(baked_models()), loaded=False)
        # The double's own start() binds 127.0.0.1 only; this is `ollama serve`'s listener.
        runner = web.AppRunner(double.make_app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        print(f"stand-in ollama serve (NOT OLLAMA: the protocol double) on {host}:{port}, "
              f"models {baked_models()}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        asyncio.run(run_server())
    except OSError as exc:
        print(f"Error: listen tcp {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "serve":
        return serve()
    try:
        if command == "list":
            for model in call("GET", "/api/tags")["models"]:
                print(model["name"])
            return 0
        if command == "ps":
            print("NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL")
            for model in call("GET", "/api/ps")["models"]:
                print(f"{model['name']}    stand-in    1 GB    100% GPU    8192    Forever")
            return 0
        if command == "run":
            model = args[0]
            delay = float(os.environ.get("FAKE_OLLAMA_RUN_SECONDS", "0"))
            time.sleep(delay)
            if os.environ.get("FAKE_OLLAMA_RUN_FAIL"):
                print(f"Error: fake run told to fail loading {model}", file=sys.stderr)
                return 1
            listed = {m["name"] for m in call("GET", "/api/tags")["models"]}
            if normalized(model) not in listed:
                print(f"Error: pull model manifest: {model} is not in $OLLAMA_MODELS "
                      "(stand-in: no registry to pull from)", file=sys.stderr)
                return 1
            call("POST", "/api/generate", {"model": model, "prompt": " ".join(args[1:]),
                                           "stream": False})
            call("POST", "/_double/knobs", {"loaded": True})
            return 0
        if command == "pull":
            call("GET", "/api/tags")  # a client of the server, as the real pull is
            bake(args[0])
            return 0
        if command == "show":
            return 0 if complete(args[0]) else 1
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        print(f"Error: could not connect to ollama server: {exc}", file=sys.stderr)
        return 1
    print(f"fake ollama: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
