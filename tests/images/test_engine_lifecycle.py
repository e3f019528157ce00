"""tests/images/engine.py and standin.py without starting an engine: the private socket, the
daemon's flags, the client's environment, the loud line, the stand-in's name, mirror and key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import dockerd, engine, standin
from tests.images.common import APP_DOCKERFILE, docker_engine_available, parse_dockerfile

MACHINE_SOCKET = "/var/run/docker.sock"


@pytest.mark.parametrize("depth", [1, 40, 200])
def test_the_socket_path_fits_a_unix_socket_however_deep_the_checkout(depth):
    repo = Path("/") / "/".join(["d"] * depth)
    run_dir = dockerd.run_dir(repo)
    longest = len(str(run_dir)) + len("/exec/containerd/containerd.sock.ttrpc")
    assert longest <= 107, run_dir  # sun_path is 108 bytes with its NUL (unix(7))
    if run_dir.is_relative_to(repo):
        assert run_dir == repo / ".cache" / "engine" / "run"
    else:  # the short fallback is per checkout
        assert run_dir != dockerd.run_dir(repo / "other")


def test_the_daemon_is_private_and_changes_nothing_of_the_machines_network():
    args = dockerd.dockerd_args()
    flags = dict(arg.split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
    assert flags == {"--iptables": "false", "--ip6tables": "false", "--bridge": "none",
                     "--ip-forward": "false", "--ip-masq": "false", "--userland-proxy": "false"}
    pairs = dict(zip(args, args[1:], strict=False))
    assert pairs["--host"] == dockerd.DOCKER_HOST == f"unix://{dockerd.SOCKET}"
    for option, path in (("--data-root", dockerd.DATA_ROOT), ("--pidfile", dockerd.PIDFILE),
                         ("--config-file", dockerd.DAEMON_CONFIG)):
        assert pairs[option] == str(path) and path.is_relative_to(dockerd.REPO / ".cache")
    assert pairs["--exec-root"] == str(dockerd.EXEC_ROOT)
    assert MACHINE_SOCKET not in " ".join(args)


def test_the_client_environment_names_the_private_socket_whatever_the_caller_set(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{MACHINE_SOCKET}")
    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    env = engine.engine_env()
    assert env["DOCKER_HOST"] == dockerd.DOCKER_HOST
    assert "DOCKER_CONTEXT" not in env and "DOCKER_TLS_VERIFY" not in env
    assert env["DOCKER_CONFIG"] == str(dockerd.CLIENT_CONFIG)  # no ~/.docker contexts
    first = Path(env["PATH"].split(":")[0]) / "docker"
    assert first.resolve() == Path(engine.docker_client()).resolve()


def test_docker_engine_available_asks_the_private_engine_only(monkeypatch):
    monkeypatch.delenv(dockerd.UNAVAILABLE_ENV, raising=False)
    monkeypatch.setattr(dockerd, "answers", lambda timeout=2.0: False)
    monkeypatch.setattr(dockerd, "start", lambda *a, **k: pytest.fail("must not start one"))
    available, why = docker_engine_available()
    assert not available and str(dockerd.SOCKET) in why


def test_run_says_loudly_why_the_engine_tests_skip_and_keeps_the_commands_status():
    # UNAVAILABLE_ENV set: ensure_engine reports that reason without starting anything.
    code = ("import os, sys; print(os.environ['LLM_API_ENGINE_UNAVAILABLE']); sys.exit(3)")
    result = subprocess.run(
        [sys.executable, "-m", "tests.images.engine", "run", "--", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, cwd=dockerd.REPO,
        env={"PATH": "/usr/bin:/bin", dockerd.UNAVAILABLE_ENV: "no dockerd here (a test)"})
    assert result.returncode == 3
    assert result.stdout.strip() == "no dockerd here (a test)"
    assert result.stderr.count("ENGINE TESTS") == 2 and "!!!" in result.stderr, result.stderr


def test_the_standin_is_named_after_the_dockerfiles_one_base():
    bases = {stage.base for stage in parse_dockerfile(APP_DOCKERFILE).stages}
    assert {standin.from_name()} == bases
    assert standin.description().startswith(f"STAND-IN for {standin.from_name()}")


def test_a_dockerfile_with_two_bases_has_no_single_standin(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11 AS build\nFROM debian:bookworm\n")
    with pytest.raises(ValueError, match="expected one base image"):
        standin.from_name(dockerfile)


@pytest.mark.parametrize(("name", "text", "mirror"), [
    ("sources.list.d/debian.sources",
     "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
     "Components: main\n\nTypes: deb\nURIs: http://security.example/\nSuites: "
     "bookworm-security\n", "http://mirror.example/debian"),
    ("sources.list", "# x\ndeb [arch=amd64] http://old.example/debian bookworm main\n",
     "http://old.example/debian"),
    ("sources.list", "deb http://deb.example/ubuntu noble main\n", standin.DEFAULT_MIRROR),
])
def test_the_debian_mirror_is_the_one_apt_uses(tmp_path, name, text, mirror):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
    assert standin.debian_mirror(tmp_path) == mirror


@pytest.mark.parametrize("change", ["PACKAGES", "PIP_CONF", "IMAGE_CONFIG", "SUITE"])
def test_the_cache_key_follows_the_recipe(monkeypatch, change):
    before = standin.cache_key()
    value = getattr(standin, change)
    monkeypatch.setattr(standin, change, (*value, "x") if isinstance(value, tuple) else value + "x")
    assert standin.cache_key() != before


def test_the_cache_key_follows_the_ca_bundle(monkeypatch, tmp_path):
    before = standin.cache_key()
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(standin.HOST_CA_BUNDLE.read_bytes() + b"\n")
    monkeypatch.setattr(standin, "HOST_CA_BUNDLE", bundle)
    assert standin.cache_key() != before


def test_an_interrupted_build_step_leaves_no_process_of_its_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    with pytest.raises(engine.EngineCommandError, match="no result within 1 s"):
        standin._run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], "a step", timeout=1)
    child = int(pidfile.read_text())
    state = Path(f"/proc/{child}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_the_scratch_root_is_unmounted_before_it_is_deleted(tmp_path):
    scratch = tmp_path / "rootfs-x"
    mounted = scratch / "root" / "proc"
    mounted.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mounted)], check=True)
    try:
        (mounted / "inside").write_text("x")  # what a leftover mount would expose to rmtree
        standin._remove_scratch(scratch)
        assert not scratch.exists()
    finally:
        subprocess.run(["umount", "--lazy", str(mounted)], capture_output=True, check=False)
