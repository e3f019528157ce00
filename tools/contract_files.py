"""Files derived from app/contract.py that are not templates: written by generate.py, committed.

- `gateway.env`: what compose's gateway service reads (env_file): the defaults of every TASK
  and SSM setting (the values the task definition and the config layer's SSM parameters hold
  with default parameters) and uvicorn's UVICORN_* options from the timeout budget.
- The field list of app/settings.py's Settings (between its `generated:settings-fields`
  markers): one typed field per declaration, so mypy sees real types.
- The timeout budget table of docs/infrastructure.md (tools/docs.py section "timeout-budget").
- Marked values in hand-written files (MARKED): the default model, the Ollama port and the
  gateway port where docker-compose.yml, .env.example, ollama/, app/Dockerfile and
  docs/images.md hold them.
  Each is a pattern whose group "value" generate.py rewrites to the contract's value; `--check`
  fails while one differs, and a pattern that matches nothing is an error naming the file.

Nothing here imports app.settings (it refuses to import while its field list is stale, which is
exactly when this module must run) or pydantic: generation stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app import contract
from tools.files import write_atomically

REPO = Path(__file__).resolve().parent.parent
ENV_FILE = "gateway.env"
SETTINGS_MODULE = "app/settings.py"
# kind -> the annotation of its Settings field (Csv: app.settings' comma-separated tuple).
ANNOTATIONS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "csv": "Csv"}
_FIELDS = re.compile(r"(?P<head>^(?P<indent> *)# BEGIN generated:settings-fields[^\n]*\n)"
                     r"(?P<body>.*?)"
                     r"(?P<tail>^ *# END generated:settings-fields$)", re.DOTALL | re.MULTILINE)
# Characters that compose v1 and v2 read differently in an env file (quotes, interpolation,
# comments, surrounding blanks): a value holding one is refused rather than escaped.
_UNSAFE_ENV_VALUE = re.compile(r"[\s\"'$#\\`]")


class ContractFileError(ValueError):
    """A derived file cannot be written as it stands; the message names the file and the fix."""


@dataclass(frozen=True)
class Marked:
    """One value of a hand-written file that follows the contract: where it stands (a regex
    whose group "value" is the value), and what it follows (named in errors)."""

    path: str
    pattern: str
    follows: str

    def value(self) -> str:
        return {"DEFAULT_MODEL": contract.DEFAULT_MODEL, "OLLAMA_PORT": str(contract.OLLAMA_PORT),
                "GATEWAY_PORT": str(contract.GATEWAY_PORT)}[self.follows]


COMPOSE, ENV_EXAMPLE = "docker-compose.yml", ".env.example"
OLLAMA_DOCKERFILE, GATEWAY_DOCKERFILE = "ollama/Dockerfile", "app/Dockerfile"
MARKED: tuple[Marked, ...] = (
    # compose: the model (build argument, OLLAMA_MODEL, health check, GATEWAY_MODELS), both ports
    Marked(COMPOSE, r"\$\{OLLAMA_MODEL:-(?P<value>[^}]*)\}", "DEFAULT_MODEL"),
    Marked(COMPOSE, r"OLLAMA_HOST: 127\.0\.0\.1:(?P<value>\d+)", "OLLAMA_PORT"),
    Marked(COMPOSE, r"reaches Ollama on 127\.0\.0\.1:(?P<value>\d+)", "OLLAMA_PORT"),
    Marked(COMPOSE, r"only; (?P<value>\d+) is not published", "OLLAMA_PORT"),
    Marked(COMPOSE, r"The gateway's port (?P<value>\d+) is published", "GATEWAY_PORT"),
    Marked(COMPOSE, r'"127\.0\.0\.1:(?P<value>\d+):\d+"', "GATEWAY_PORT"),
    Marked(COMPOSE, r'"127\.0\.0\.1:\d+:(?P<value>\d+)"', "GATEWAY_PORT"),
    Marked(COMPOSE, r"http://127\.0\.0\.1:(?P<value>\d+)/healthz", "GATEWAY_PORT"),
    Marked(ENV_EXAMPLE, r"^OLLAMA_MODEL=(?P<value>.*)$", "DEFAULT_MODEL"),
    # the Ollama image: its build default, the build example, where serve listens
    Marked(OLLAMA_DOCKERFILE, r"^ARG MODEL=(?P<value>.*)$", "DEFAULT_MODEL"),
    Marked(OLLAMA_DOCKERFILE, r"--build-arg MODEL=(?P<value>\S+) ollama/", "DEFAULT_MODEL"),
    Marked(OLLAMA_DOCKERFILE, r"OLLAMA_HOST=127\.0\.0\.1:(?P<value>\d+)", "OLLAMA_PORT"),
    Marked(OLLAMA_DOCKERFILE, r"^EXPOSE (?P<value>\d+)$", "OLLAMA_PORT"),
    Marked("ollama/pull-model.sh", r"OLLAMA_BUILD_HOST:-127\.0\.0\.1:(?P<value>\d+)",
           "OLLAMA_PORT"),
    # docs/images.md: the default and the examples that run it
    Marked("docs/images.md", r"\(default `(?P<value>[^`]+)`, the contract's\)", "DEFAULT_MODEL"),
    Marked("docs/images.md", r"--build-arg MODEL=(?P<value>\S+) -t", "DEFAULT_MODEL"),
    Marked("docs/images.md", r'"model":"(?P<value>[^"]+)","prompt"', "DEFAULT_MODEL"),
    # the gateway image: what it exposes, its health check, uvicorn's port
    Marked(GATEWAY_DOCKERFILE, r"^EXPOSE (?P<value>\d+)$", "GATEWAY_PORT"),
    Marked(GATEWAY_DOCKERFILE, r"http://127\.0\.0\.1:(?P<value>\d+)/healthz", "GATEWAY_PORT"),
    Marked(GATEWAY_DOCKERFILE, r'"--port", "(?P<value>\d+)"', "GATEWAY_PORT"),
)
# compose, .env.example and the Dockerfile hold the model unquoted (${OLLAMA_MODEL:-...}, an
# env-file line, ARG): a name outside Ollama's name:tag characters would change their meaning.
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._:/-]{0,127}$")


def with_marked_values(path: str, text: str, marks: tuple[Marked, ...] = MARKED) -> str:
    """text with every marked value of path set to the contract's."""
    if not _MODEL_NAME.match(contract.DEFAULT_MODEL):
        raise ContractFileError(
            f"app/contract.py: DEFAULT_MODEL {contract.DEFAULT_MODEL!r} is not an Ollama model "
            f"name (lowercase name:tag; letters, digits, . _ : / -)")
    for mark in (m for m in marks if m.path == path):
        found = list(re.finditer(mark.pattern, text, re.MULTILINE))
        if not found:
            raise ContractFileError(
                f"{path}: nothing matches {mark.pattern!r}, the place that holds "
                f"{mark.follows} from app/contract.py; put the line back, or change MARKED in "
                f"tools/contract_files.py")
        for match in reversed(found):
            text = text[:match.start("value")] + mark.value() + text[match.end("value"):]
    return text


def env_file_text(settings: tuple[contract.Setting, ...] = contract.SETTINGS,
                  budget: contract.TimeoutBudget = contract.TIMEOUTS) -> str:
    lines = [
        "# GENERATED by generate.py from app/contract.py; do not edit (`make generate` rewrites",
        "# it, `generate.py --check` fails while it is stale). docker-compose.yml's gateway reads",
        "# it (env_file); its `environment:` sets the local-only values (key, model, proxies).",
        "#",
        "# TASK and SSM settings: the values ECS injects with default parameters.",
    ]
    values = [(s.env, s.default_text) for s in settings
              if s.source in (contract.Source.TASK, contract.Source.SSM)]
    values += [("# uvicorn options from the timeout budget (the task sets the same values)", None)]
    values += list(contract.uvicorn_environment(budget).items())
    for name, value in values:
        if value is None:
            lines.append(name)
            continue
        if _UNSAFE_ENV_VALUE.search(value):
            raise ContractFileError(
                f"{ENV_FILE}: {name}={value!r} holds a blank, quote, $, # or backslash, which "
                f"compose v1 and v2 read differently; choose a default without one")
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def field_lines(settings: tuple[contract.Setting, ...] = contract.SETTINGS) -> list[str]:
    """The Settings field list: name, annotation from the kind, the rest from the declaration."""
    return [f'{contract.field_name(s.env)}: {ANNOTATIONS[s.kind]} = declared("{s.env}")'
            for s in settings]


def settings_module_text(current: str,
                         settings: tuple[contract.Setting, ...] = contract.SETTINGS) -> str:
    match = _FIELDS.search(current)
    if match is None:
        raise ContractFileError(
            f"{SETTINGS_MODULE}: the lines '# BEGIN generated:settings-fields' and "
            f"'# END generated:settings-fields' are missing from class Settings; put them back "
            f"around its field list")
    indent = match.group("indent")
    body = "".join(f"{indent}{line}\n" for line in field_lines(settings))
    return current[:match.start("body")] + body + current[match.end("body"):]


def budget_table(budget: contract.TimeoutBudget = contract.TIMEOUTS) -> str:
    """The timeout budget as docs/infrastructure.md shows it (tools/docs.py section)."""
    uvicorn = contract.uvicorn_environment(budget)
    rows = [
        ("longest generation", budget.max_generation_seconds,
         "`max_generation_seconds`: the one number the rest follows; the gateway's upstream "
         "total and whole-exchange bound"),
        ("first token / longest silence", budget.first_token_seconds,
         "cold model load included; the gateway's upstream read timeout"),
        ("ALB idle timeout", budget.alb_idle_timeout_seconds,
         "longest generation + 30: a non-streaming answer is silent until it is complete"),
        ("gateway keep-alive", budget.keep_alive_seconds,
         f"ALB idle + 5 (`UVICORN_TIMEOUT_KEEP_ALIVE={uvicorn['UVICORN_TIMEOUT_KEEP_ALIVE']}` "
         f"in the task and gateway.env)"),
        ("deregistration delay", budget.deregistration_delay_seconds,
         "longest generation + 30: ECS waits this long before SIGTERM"),
        ("uvicorn graceful shutdown", budget.graceful_shutdown_seconds,
         "drain after SIGTERM (`UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN`, and the gateway's "
         "GATEWAY_GRACEFUL_SHUTDOWN_SECONDS)"),
        ("container stop timeout", budget.container_stop_timeout_seconds,
         "graceful shutdown + 5: SIGKILL after it"),
        ("stream ping", budget.stream_ping_seconds,
         "OpenAI streams get a comment after this much silence (after the first byte)"),
        ("one client write", budget.client_write_seconds,
         "a client that stops reading is cut after this"),
        ("request body", budget.request_body_seconds, "after the headers; 408 beyond"),
        ("upstream connect", budget.upstream_connect_seconds, "TCP connect to Ollama; 503 beyond"),
    ]
    lines = ["| what | seconds | rule |", "|---|---:|---|"]
    lines += [f"| {what} | {value} | {rule} |" for what, value, rule in rows]
    return "\n".join(lines)


def budget_problems() -> list[str]:
    """One line per violated budget rule or broken declaration (generate.py exits 2 on any)."""
    return ([f"timeout budget: {rule}" for rule in contract.TIMEOUTS.violations()]
            + [f"setting declaration: {problem}"
               for problem in contract.declaration_problems(contract.SETTINGS)])


def rendered(repo: Path = REPO) -> dict[str, str]:
    """Relative path -> the text it must hold."""
    settings_path = repo / SETTINGS_MODULE
    files = {
        ENV_FILE: env_file_text(),
        SETTINGS_MODULE: settings_module_text(settings_path.read_text()),
    }
    for path in sorted({mark.path for mark in MARKED}):
        try:
            current = (repo / path).read_text()
        except FileNotFoundError:
            raise ContractFileError(f"{path}: missing (it holds values from app/contract.py)") from None
        files[path] = with_marked_values(path, current)
    return files


def update(repo: Path = REPO, check: bool = False) -> list[str]:
    """Write (or, with check, only find) every stale derived file; returns their paths."""
    stale = []
    for name, text in rendered(repo).items():
        path = repo / name
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644
            write_atomically(path, text)
            path.chmod(mode)  # the image copies app/ as it is: keep it readable by uid 10001
    return stale
