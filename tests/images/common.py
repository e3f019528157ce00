"""Shared helpers of the image tests: a small Dockerfile reader, the task definition, compose.

The Dockerfile reader handles what our two Dockerfiles use (comments, line continuations,
stages, exec and shell forms, KEY=VALUE lists); it is not a general Dockerfile parser, and it
fails loudly on forms it does not know rather than guessing.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cfn import REPO
from tests.images import dockerd

BIN = Path(sys.executable).parent
APP_DOCKERFILE = REPO / "app" / "Dockerfile"
OLLAMA_DOCKERFILE = REPO / "ollama" / "Dockerfile"
DOCKERFILES = (APP_DOCKERFILE, OLLAMA_DOCKERFILE)
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_CPU_FILE = REPO / "docker-compose.cpu.yml"
ENV_EXAMPLE = REPO / ".env.example"
GATEWAY_ENV = REPO / "gateway.env"  # generate.py writes it from app/contract.py
SERVICE_TEMPLATE = REPO / "templates" / "service.json"


# -- Dockerfiles ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/RUN, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"line {self.line}: not a JSON array of strings: {text}")
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(key_values(instruction))
        return values

    def labels(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            values.update(key_values(instruction))
        return values


@dataclass
class Dockerfile:
    path: Path
    preamble: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def instructions(self) -> list[Instruction]:
        return self.preamble + [i for stage in self.stages for i in stage.instructions]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text) with comments dropped and continuations joined."""
    result: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        result.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    if buffer:
        raise ValueError("Dockerfile ends inside a line continuation")
    return result


def parse_dockerfile(path: Path, text: str | None = None) -> Dockerfile:
    text = path.read_text() if text is None else text
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), number)
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return Dockerfile(path, preamble, stages)


def key_values(instruction: Instruction) -> dict[str, str]:
    """KEY=VALUE pairs of ENV/LABEL/ARG (the legacy `ENV KEY VALUE` form is refused)."""
    pairs = {}
    for word in shlex.split(instruction.args):
        if "=" not in word:
            if instruction.keyword == "ARG":
                pairs[word] = ""
                continue
            raise ValueError(f"line {instruction.line}: {instruction.keyword} without KEY=VALUE")
        key, _, value = word.partition("=")
        pairs[key] = value
    return pairs


@dataclass
class Healthcheck:
    options: dict[str, str]
    command: list[str]  # Docker's form: ["CMD", ...] or ["CMD-SHELL", "..."]


def healthcheck(stage: Stage) -> Healthcheck:
    instruction = stage.last("HEALTHCHECK")
    assert instruction is not None, "no HEALTHCHECK"
    options: dict[str, str] = {}
    rest = instruction.args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.strip()
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", f"HEALTHCHECK {keyword}"
    exec_form = Instruction("CMD", command, instruction.line).exec_form()
    if exec_form is None:
        return Healthcheck(options, ["CMD-SHELL", command.strip()])
    return Healthcheck(options, ["CMD", *exec_form])


def seconds(duration: str | int) -> int:
    """'30s', '5m', '1m30s' or a number of seconds -> seconds."""
    if isinstance(duration, int):
        return duration
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration.strip())
    if not parts or not any(parts.groups()):
        raise ValueError(f"not a duration: {duration!r}")
    h, m, s = (int(g) if g else 0 for g in parts.groups())
    return h * 3600 + m * 60 + s


def dockerignore_patterns(context: Path) -> list[tuple[bool, str]]:
    """(exclude?, pattern) from the context's .dockerignore, in order."""
    path = context / ".dockerignore"
    patterns = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = (line[1:] if negate else line).strip().removeprefix("./").strip("/")
        patterns.append((not negate, pattern))  # Docker cleans paths: "app/" is "app"
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; `**/x` also matches at the top level."""
    result = False
    for exclude, pattern in patterns:
        candidates = {pattern}
        if pattern.startswith("**/"):
            candidates.add(pattern[3:])
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) or fnmatch.fnmatchcase(relative, c)
               for c in candidates for p in prefixes):
            result = exclude
    return result


def context_files(context: Path) -> list[str]:
    """Files of a build context that the daemon receives (after .dockerignore)."""
    patterns = dockerignore_patterns(context)
    files = []
    for directory, subdirectories, names in os.walk(context):
        base = Path(directory).relative_to(context).as_posix()
        base = "" if base == "." else base + "/"
        # Skip whole trees no pattern can bring back (.git, .venv): only for speed.
        subdirectories[:] = [d for d in subdirectories
                             if not (ignored(base + d, patterns)
                                     and not any(not exclude and (p.startswith(base + d)
                                                                  or "*" in p)
                                                 for exclude, p in patterns))]
        files += [base + name for name in names if not ignored(base + name, patterns)]
    return sorted(files)


def copy_context(context: Path, source: str, destination: Path) -> None:
    """What `COPY <source>/ <destination>` copies from this context (a directory source)."""
    prefix = source.strip("/") + "/"
    for relative in context_files(context):
        if relative.startswith(prefix):
            target = destination / relative[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / relative, target)


# -- the task definition (templates/service.json) ---------------------------------------------


def service_template() -> dict[str, Any]:
    return json.loads(SERVICE_TEMPLATE.read_text())


def task_containers(template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    template = template or service_template()
    definitions = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {c["Name"]: c for c in definitions}


def without_ecs_exec(value: Any) -> Any:
    """The ExecOn=false branch of `Fn::If: [ExecOn, ...]` (ECS Exec's SSM paths are ECS-only)."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, _, when_false = value["Fn::If"]
        assert condition == "ExecOn", value
        return when_false
    return value


# -- compose ----------------------------------------------------------------------------------


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in variables and (variables[name] != "" or not (op or "").startswith(":"))
        if present:
            return variables[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return ""

    return _VARIABLE.sub(substitute, value)


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def resolved_compose(raw: dict[str, Any] | None = None,
                     variables: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose model with the .env.example values, as `docker compose config` sees it."""
    raw = load_compose() if raw is None else raw
    return interpolate(raw, env_file() if variables is None else variables)


def env_files(service: dict[str, Any], base: Path = REPO) -> list[Path]:
    """The service's env_file entries (short or long syntax), relative to the compose file."""
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str | dict) else entries
    return [base / (entry["path"] if isinstance(entry, dict) else entry) for entry in entries]


def compose_environment(service: dict[str, Any], base: Path = REPO) -> dict[str, str]:
    """What the container gets: its env_file values, then `environment` over them (compose's
    precedence: https://docs.docker.com/compose/how-tos/environment-variables/envvars-precedence/)."""
    values: dict[str, str] = {}
    for path in env_files(service, base):
        values.update(env_file(path))
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    values.update({k: "" if v is None else str(v) for k, v in environment.items()})
    return values


# -- processes and ports ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:  # noqa: S104 (a probe bind only)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def docker_engine_available() -> tuple[bool, str]:
    """The project's private engine answers on its own socket (tests/images/engine.py); the
    machine's Docker (/var/run/docker.sock, a context) does not count and is never asked."""
    return dockerd.ensure_engine(start_if_needed=False)
