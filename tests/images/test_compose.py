"""docker-compose.yml: valid two ways (the compose-spec JSON schema and `docker-compose config`),
shaped like the ECS task (one network namespace, loopback only, read-only, GPU), and free of
secrets. The GPU-less override is checked by Compose v2 where it is installed.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.images.common import (
    BIN,
    COMPOSE_CPU_FILE,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REPO,
    compose_environment,
    env_file,
    load_compose,
    resolved_compose,
)

CHECK_JSONSCHEMA = BIN / "check-jsonschema"
DOCKER_COMPOSE = shutil.which("docker-compose")
NO_COMPOSE_V1 = "docker-compose (Debian package) is not installed; .ci/run installs it"


def clean_env() -> dict[str, str]:
    """The environment without compose variables, so only --env-file supplies them."""
    names = set(env_file()) | {"COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}
    return {k: v for k, v in os.environ.items() if k not in names}


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def compose_v1(*args: str, files: tuple[Path, ...] = (COMPOSE_FILE,),
               env_file_path: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    assert DOCKER_COMPOSE is not None
    command = [DOCKER_COMPOSE, "--project-directory", str(REPO)]
    if env_file_path is not None:
        command += ["--env-file", str(env_file_path)]
    for path in files:
        command += ["-f", str(path)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=clean_env())


# -- validation -------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema():
    result = schema_check(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_fails_a_broken_file(tmp_path):
    broken = load_compose()
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = schema_check(path)
    assert result.returncode != 0 and "helthcheck" in result.stdout + result.stderr


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason=NO_COMPOSE_V1)
def test_docker_compose_config_accepts_the_file():
    result = compose_v1("config", "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason=NO_COMPOSE_V1)
def test_docker_compose_config_refuses_to_run_without_a_local_key(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_v1("config", "--quiet", env_file_path=empty)
    assert result.returncode != 0
    assert "GATEWAY_API_KEYS" in result.stderr and ".env.example" in result.stderr


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason=NO_COMPOSE_V1)
def test_docker_compose_config_resolves_what_the_parity_test_reads():
    result = compose_v1("config")
    assert result.returncode == 0, result.stderr
    by_compose = yaml.safe_load(result.stdout)["services"]
    ours = resolved_compose()["services"]
    for name in ("gateway", "ollama"):
        assert compose_environment(by_compose[name]) == compose_environment(ours[name]), name
        assert by_compose[name]["healthcheck"]["test"] == ours[name]["healthcheck"]["test"]


# -- the GPU-less override --------------------------------------------------------------------


class _ResetLoader(yaml.SafeLoader):
    """Reads compose's `!reset` tag as a marker (yaml.safe_load refuses unknown tags)."""


RESET = object()
_ResetLoader.add_constructor("!reset", lambda loader, node: RESET)


def merge_with_reset(base, override):
    """Compose's merge for the shapes the override uses: mappings merge, !reset removes."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is RESET:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_with_reset(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_cpu_override_removes_only_the_gpu_reservation(tmp_path):
    override = yaml.load(COMPOSE_CPU_FILE.read_text(), Loader=_ResetLoader)  # noqa: S506 (SafeLoader subclass)
    base = load_compose()
    merged = merge_with_reset(base, override)
    assert "devices" not in merged["services"]["ollama"]["deploy"]["resources"]["reservations"]
    for model in (base, merged):
        model["services"]["ollama"].pop("deploy")
    assert merged == base, "the override changes nothing but the GPU reservation"
    path = tmp_path / "merged.yml"
    path.write_text(yaml.safe_dump(merge_with_reset(load_compose(), override)))
    result = schema_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def compose_v2_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                            timeout=30)
    return result.returncode == 0


@pytest.mark.skipif(not compose_v2_available(),
                    reason="Docker Compose v2 (`docker compose`) is not installed; the v1 "
                           "docker-compose cannot read `!reset` (it needs Compose 2.24+)")
def test_compose_v2_merges_the_cpu_override():
    result = subprocess.run(
        ["docker", "compose", "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE),
         "-f", str(COMPOSE_FILE), "-f", str(COMPOSE_CPU_FILE), "config", "--format", "json"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=clean_env())
    assert result.returncode == 0, result.stderr
    ollama = yaml.safe_load(result.stdout)["services"]["ollama"]
    devices = (((ollama.get("deploy") or {}).get("resources") or {}).get("reservations")
               or {}).get("devices")
    assert not devices


# -- shape ------------------------------------------------------------------------------------

COMPOSE = resolved_compose()
SERVICES = COMPOSE["services"]


def test_two_services_the_gateway_inside_the_ollama_network_namespace():
    assert set(SERVICES) == {"gateway", "ollama"}
    gateway, ollama = SERVICES["gateway"], SERVICES["ollama"]
    assert gateway["network_mode"] == "service:ollama"
    assert "ports" not in gateway and "networks" not in gateway
    assert gateway["depends_on"] == {"ollama": {"condition": "service_healthy"}}
    assert compose_environment(ollama)["OLLAMA_HOST"] == "127.0.0.1:11434"
    assert compose_environment(gateway)["OLLAMA_BASE_URL"] == "http://127.0.0.1:11434"


def test_only_port_8000_is_published_and_only_on_loopback():
    assert SERVICES["ollama"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "expose" not in SERVICES["ollama"]


def test_ollama_reserves_a_gpu():
    devices = SERVICES["ollama"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_both_containers_are_non_root_read_only_with_tmpfs_and_health_checks():
    for name, service in SERVICES.items():
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["init"] is True, name
        assert any(t.startswith("/tmp:") for t in service["tmpfs"]), name
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def test_nothing_mounts_over_the_baked_models():
    for name, service in SERVICES.items():
        assert "volumes" not in service, f"{name}: no volumes (the models are baked)"
    assert "volumes" not in COMPOSE


def test_images_build_from_their_own_contexts_with_the_model_argument():
    assert SERVICES["gateway"]["build"] == {"context": ".", "dockerfile": "app/Dockerfile"}
    assert SERVICES["ollama"]["build"]["context"] == "./ollama"
    model = env_file()["OLLAMA_MODEL"]
    assert SERVICES["ollama"]["build"]["args"] == {"MODEL": model}
    assert compose_environment(SERVICES["ollama"])["OLLAMA_MODEL"] == model
    assert compose_environment(SERVICES["gateway"])["GATEWAY_MODELS"] == model


def test_no_secret_is_committed():
    raw = load_compose()
    keys = raw["services"]["gateway"]["environment"]["GATEWAY_API_KEYS"]
    assert keys.startswith("${GATEWAY_API_KEYS:?"), "the key comes from .env, never the file"
    example = env_file()
    assert example["GATEWAY_API_KEYS"].startswith("replace-with"), "placeholder only"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, timeout=30)
    assert ignored.returncode == 0, ".env must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", ".env"], cwd=REPO,
                             capture_output=True, timeout=30)
    assert tracked.returncode != 0, ".env is tracked by git"
