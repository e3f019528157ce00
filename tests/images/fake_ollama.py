"""A stand-in `ollama` CLI for process tests of ollama/entrypoint.sh and ollama/pull-model.sh.

NOT OLLAMA. It answers the few subcommands the scripts and the health check call, the way the
real CLI does for them, so the scripts' control flow (start, wait, load, health, signals, exit
status, clean-up) runs for real without the Ollama binary, a GPU or model weights:

- `serve`: writes a key pair under $HOME/.ollama as real `ollama serve` does at start (cmd.go
  initializeKeypair; why HOME must be writable), then becomes the Ollama protocol double
  (tests/ollama_double.py) on $OLLAMA_HOST with /api/ps listing nothing until a model is "run".
- `list`, `ps`: GET /api/tags, /api/ps; exit 1 when the server does not answer.
- `run MODEL PROMPT`: POST /api/generate, then tells the double the model is loaded.
- `pull MODEL`, `show MODEL`: write / read a manifest file under $OLLAMA_MODELS.

Knobs for failure paths: FAKE_OLLAMA_RUN_FAIL=1 makes `run` fail; FAKE_OLLAMA_RUN_SECONDS=N
makes it take N seconds first (a slow model load); FAKE_OLLAMA_SERVE_FAIL=1 makes `serve` exit 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def base_url() -> str:
    host = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    return "http://" + host.removeprefix("http://")


def call(method: str, path: str, body: dict | None = None, timeout: float = 5.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url() + path, data=data, method=method,  # noqa: S310 (loopback only)
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def manifest(model: str) -> Path:
    name, _, tag = model.partition(":")
    return (Path(os.environ["OLLAMA_MODELS"]) / "manifests" / "registry.ollama.ai" / "library"
            / name / (tag or "latest"))


def serve() -> int:
    if os.environ.get("FAKE_OLLAMA_SERVE_FAIL"):
        print("Error: fake serve told to fail", file=sys.stderr)
        return 1
    key = Path(os.environ["HOME"]) / ".ollama" / "id_ed25519"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("fake private key, written where real `ollama serve` writes its own\n")
    port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rsplit(":", 1)[1]
    models = os.environ.get("OLLAMA_MODEL", "llama3.2:1b")
    os.chdir(REPO)
    os.execv(sys.executable, [sys.executable, "-m", "tests.ollama_double", "--port", port,  # noqa: S606
                              "--models", models, "--not-loaded"])
    return 1  # pragma: no cover - execv does not return


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
                print(f"{model['name']}    fake    1 GB    100% GPU    8192    Forever")
            return 0
        if command == "run":
            model = args[0]
            delay = float(os.environ.get("FAKE_OLLAMA_RUN_SECONDS", "0"))
            time.sleep(delay)
            if os.environ.get("FAKE_OLLAMA_RUN_FAIL"):
                print(f"Error: fake run told to fail loading {model}", file=sys.stderr)
                return 1
            call("POST", "/api/generate", {"model": model, "prompt": " ".join(args[1:]),
                                           "stream": False})
            call("POST", "/_double/knobs", {"loaded": True})
            return 0
        if command == "pull":
            call("GET", "/api/tags")  # a client of the server, as the real pull is
            path = manifest(args[0])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"schemaVersion": 2, "layers": []}))
            return 0
        if command == "show":
            return 0 if manifest(args[0]).exists() else 1
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        print(f"Error: could not connect to ollama server: {exc}", file=sys.stderr)
        return 1
    print(f"fake ollama: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
