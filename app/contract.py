"""The gateway's contract with the infrastructure: settings, timeout budget, scaling metric.

Standard library only. The gateway (app.settings) and the template generator (stacks/) both
read this module, so a setting's name, default, source and bounds, every timeout and the metric
the service scales on are written down once. Adding a setting is one declaration here plus
`make generate` (then the code that uses it): the config layer creates its SSM parameter, the
service layer injects it, generate.py writes its typed field into app/settings.py and its
default into gateway.env (compose), the Settings class enforces its bounds, and the compose
parity test expects it. Raising the longest generation is one number in TimeoutBudget: the ALB,
the target group, the task's UVICORN_* values, gateway.env and the docs follow, and generate.py
refuses a budget whose inequalities fail.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SettingValue = str | int | float | bool | tuple[str, ...]


class Source(enum.Enum):
    """Where a setting's value comes from when the gateway runs in ECS."""

    SECRET = "secret"  # noqa: S105 (a source name, not a password): the config layer's Secrets Manager secret, injected as an ECS Secret
    SSM = "ssm"  # an SSM String parameter of the config layer, injected as an ECS Secret
    TASK = "task"  # a value the task definition sets in Environment (not secret by nature)
    LOCAL = "local"  # never set in ECS: the default applies there; for local runs and tests


@dataclass(frozen=True)
class Setting:
    """One environment variable the gateway reads, with the values it accepts.

    kind: "str", "int", "float", "bool" or "csv" (a comma-separated list, parsed explicitly).
    root_parameter: for SSM and TASK settings whose value differs per environment, the root
    template parameter that supplies it; otherwise the default is written into the template.
    Bounds (app.settings refuses a value outside them, naming the variable):
      above / minimum / maximum: for int and float, exclusive lower, inclusive lower and
      inclusive upper bound; for csv, minimum is the fewest entries allowed;
      choices: for str, the allowed values (compared case-insensitively);
      prefixes: for str, the value must start with one of them.
    """

    env: str
    kind: str
    default: SettingValue
    source: Source
    description: str
    root_parameter: str | None = None
    above: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    @property
    def default_text(self) -> str:
        """The default as the string an environment variable (or SSM parameter) holds."""
        return render_value(self.kind, self.default)

    def problems(self, value: SettingValue) -> list[str]:
        """What is wrong with a parsed value of this setting (empty when it is allowed)."""
        found = []
        if self.kind == "csv" and isinstance(value, tuple):
            if self.minimum is not None and len(value) < self.minimum:
                found.append(f"{self.env} must name at least {self.minimum:g} "
                             f"entr{'y' if self.minimum == 1 else 'ies'}")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if self.above is not None and not value > self.above:
                found.append(f"{self.env} must be greater than {self.above:g}")
            if self.minimum is not None and value < self.minimum:
                found.append(f"{self.env} must not be negative" if self.minimum == 0 else
                             f"{self.env} must be at least {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                found.append(f"{self.env} must be at most {self.maximum:g}")
        elif isinstance(value, str):
            if self.choices and value.lower() not in self.choices:
                found.append(f"{self.env} must be one of {', '.join(self.choices)}")
            if self.prefixes and not value.startswith(self.prefixes):
                found.append(f"{self.env} must start with {' or '.join(self.prefixes)}")
        return found


def render_value(kind: str, value: SettingValue) -> str:
    if kind == "bool":
        return "true" if value else "false"
    if kind == "csv":
        if not isinstance(value, tuple):
            raise TypeError(f"a csv value is a tuple of strings, not {value!r}")
        return ",".join(value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# Timeout budget. Every number that bounds a request's life is derived here from the longest
# generation we allow, so the ALB, the gateway, uvicorn and ECS cannot disagree.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeoutBudget:
    # The longest a single generation may run end to end (the gateway's total upstream timeout).
    max_generation_seconds: int = 300
    # Longest wait for the first byte from Ollama, which includes loading a cold model into GPU
    # memory; also the longest gap allowed between two tokens.
    first_token_seconds: int = 120
    # TCP connect to Ollama on localhost: anything slower means it is not there.
    upstream_connect_seconds: int = 5
    # OpenAI-style SSE streams send a comment this often during silences after the first byte.
    stream_ping_seconds: int = 15
    # After SIGTERM: how long uvicorn lets in-flight requests finish before it closes them.
    graceful_shutdown_seconds: int = 25
    # The longest one write to the client may block (its socket buffers full: a client that
    # stopped reading). Beyond it the exchange is cut: upstream closed, slot freed, connection
    # dropped. The whole exchange (slot taken to last byte written) is bounded by
    # max_generation_seconds; this bound frees the slot sooner than that.
    client_write_seconds: int = 30
    # The longest the gateway waits for a request body once the headers are in (408 beyond).
    request_body_seconds: int = 30

    @property
    def alb_idle_timeout_seconds(self) -> int:
        # A non-streaming response is silent until generation ends, so the ALB must wait at
        # least the whole generation (it resets its idle timer only when bytes flow).
        return self.max_generation_seconds + 30

    @property
    def keep_alive_seconds(self) -> int:
        # The target must keep idle connections open longer than the ALB does, or the ALB
        # reuses a connection the target just closed and answers 502.
        return self.alb_idle_timeout_seconds + 5

    @property
    def deregistration_delay_seconds(self) -> int:
        # ECS deregisters the task and waits this long BEFORE it sends SIGTERM; the longest
        # generation must be able to finish inside it.
        return self.max_generation_seconds + 30

    @property
    def container_stop_timeout_seconds(self) -> int:
        # After SIGTERM, ECS waits this long before SIGKILL: uvicorn's drain plus a margin.
        return self.graceful_shutdown_seconds + 5

    def violations(self) -> list[str]:
        """Every inequality the budget must satisfy that it does not (empty when sound)."""
        checks = [
            (self.upstream_connect_seconds < self.first_token_seconds,
             "upstream connect timeout must be shorter than the first-token timeout"),
            (self.first_token_seconds < self.max_generation_seconds,
             "first-token timeout must be shorter than the longest generation"),
            (self.stream_ping_seconds < self.first_token_seconds,
             "stream ping interval must be shorter than the first-token timeout"),
            (self.alb_idle_timeout_seconds >= self.max_generation_seconds,
             "ALB idle timeout must cover a silent non-streaming generation"),
            (self.stream_ping_seconds < self.alb_idle_timeout_seconds,
             "stream pings must come more often than the ALB idle timeout"),
            (self.keep_alive_seconds > self.alb_idle_timeout_seconds,
             "gateway keep-alive must be longer than the ALB idle timeout"),
            (self.deregistration_delay_seconds >= self.max_generation_seconds,
             "deregistration delay must cover the longest generation"),
            (self.container_stop_timeout_seconds > self.graceful_shutdown_seconds,
             "container stop timeout must exceed uvicorn's graceful shutdown"),
            (0 < self.client_write_seconds < self.max_generation_seconds,
             "client write bound must be positive and shorter than the longest generation"),
            (self.client_write_seconds <= self.first_token_seconds,
             "client write bound must not exceed the first-token timeout (a client may not "
             "stall longer than Ollama may)"),
            (0 < self.request_body_seconds < self.alb_idle_timeout_seconds,
             "request body timeout must be positive and shorter than the ALB idle timeout"),
            (self.alb_idle_timeout_seconds <= 4000,
             "ALB idle timeout must be at most 4000 s (AWS limit)"),
            (self.deregistration_delay_seconds <= 3600,
             "deregistration delay must be at most 3600 s (AWS limit)"),
            (self.container_stop_timeout_seconds <= 120,
             "container stop timeout must be at most 120 s (ECS limit)"),
        ]
        return [message for ok, message in checks if not ok]


TIMEOUTS = TimeoutBudget()


# ---------------------------------------------------------------------------------------------
# Scaling metric: the gateway writes it as CloudWatch Embedded Metric Format log lines; the
# service layer's target-tracking policy and dashboard read the same names.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    description: str


METRIC_NAMESPACE = "LlmGateway"
METRIC_DIMENSIONS = ("ClusterName", "ServiceName")
# The in-flight gauge is emitted at least this often, 0 when idle, so target tracking always
# has a data point per task to average.
METRIC_EMIT_INTERVAL_SECONDS = 30

IN_FLIGHT_REQUESTS = Metric("InFlightRequests", "Count", "requests being served, per task")
TIME_TO_FIRST_TOKEN = Metric("TimeToFirstToken", "Milliseconds", "first upstream byte")
REQUEST_LATENCY = Metric("RequestLatency", "Milliseconds", "whole request")
OUTPUT_TOKENS = Metric("OutputTokens", "Count", "tokens generated, per request")
METRICS = (IN_FLIGHT_REQUESTS, TIME_TO_FIRST_TOKEN, REQUEST_LATENCY, OUTPUT_TOKENS)
# The scaling policy's target: in-flight requests per task. Ollama serves OLLAMA_NUM_PARALLEL
# at once; scaling out before every slot is busy leaves headroom for the next model load.
SCALING_METRIC = IN_FLIGHT_REQUESTS


# ---------------------------------------------------------------------------------------------
# Settings. Root parameters named here are created by the config/service layers' templates.
# ---------------------------------------------------------------------------------------------

OLLAMA_PORT = 11434
GATEWAY_PORT = 8000
# The model served by default: GATEWAY_MODELS' default, hence the root parameter ModelName's;
# generate.py writes it into compose, .env.example and the Ollama image's build default.
DEFAULT_MODEL = "llama3.2:1b"
DEFAULT_OLLAMA_PARALLEL = 4
# The names Python's logging knows (app/logs.py maps them to levels).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

SETTINGS: tuple[Setting, ...] = (
    Setting("OLLAMA_BASE_URL", "str", f"http://127.0.0.1:{OLLAMA_PORT}", Source.TASK,
            "Where Ollama listens: the sidecar on the task's loopback.",
            prefixes=("http://", "https://")),
    Setting("GATEWAY_API_KEYS", "csv", (), Source.SECRET,
            "Active bearer keys, comma-separated (two during a rotation)."),
    Setting("GATEWAY_AUTH_DISABLED", "bool", False, Source.LOCAL,
            "Serve without keys. Only for a local run; never set in ECS."),
    Setting("GATEWAY_MODELS", "csv", (DEFAULT_MODEL,), Source.SSM,
            "Allowed models, comma-separated; the first is the default.",
            root_parameter="ModelName", minimum=1),
    Setting("GATEWAY_MAX_BODY_BYTES", "int", 1_048_576, Source.SSM,
            "Largest request body accepted; larger is 413 before parsing.", above=0),
    Setting("GATEWAY_MAX_OUTPUT_TOKENS", "int", 2048, Source.SSM,
            "Cap on num_predict / max_tokens.", above=0),
    Setting("GATEWAY_CONTEXT_TOKENS", "int", 8192, Source.SSM,
            "Context size given to Ollama; longer prompts are refused with 400.", above=0),
    Setting("GATEWAY_MAX_CONCURRENCY", "int", DEFAULT_OLLAMA_PARALLEL, Source.SSM,
            "Requests served at once per task (sized to OLLAMA_NUM_PARALLEL).",
            root_parameter="OllamaNumParallel", above=0),
    Setting("GATEWAY_QUEUE_TIMEOUT_SECONDS", "float", 1.0, Source.SSM,
            "Longest wait for a free slot before 429 with Retry-After.", minimum=0),
    Setting("GATEWAY_CORS_ORIGINS", "csv", (), Source.LOCAL,
            "Allowed CORS origins, comma-separated; empty turns CORS off."),
    Setting("GATEWAY_DOCS_ENABLED", "bool", False, Source.LOCAL,
            "Serve /docs and /openapi.json."),
    Setting("GATEWAY_LOG_LEVEL", "str", "info", Source.TASK, "Log level of the gateway.",
            choices=LOG_LEVELS),
    Setting("GATEWAY_CLUSTER_NAME", "str", "local", Source.TASK,
            "ECS cluster name: the ClusterName dimension of the metrics."),
    Setting("GATEWAY_SERVICE_NAME", "str", "local", Source.TASK,
            "ECS service name: the ServiceName dimension of the metrics."),
    # Local-only knobs: ECS never sets them, so the numbers of the timeout budget above apply
    # there; tests and local runs shorten them.
    Setting("GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS", "float",
            float(TIMEOUTS.upstream_connect_seconds), Source.LOCAL,
            "TCP connect to Ollama; slower means unreachable (503).", above=0),
    Setting("GATEWAY_UPSTREAM_READ_TIMEOUT_SECONDS", "float",
            float(TIMEOUTS.first_token_seconds), Source.LOCAL,
            "Longest silence from Ollama: first token (model load included) or between chunks.",
            above=0),
    Setting("GATEWAY_UPSTREAM_TOTAL_TIMEOUT_SECONDS", "float",
            float(TIMEOUTS.max_generation_seconds), Source.LOCAL,
            "Longest upstream request end to end (504 or a terminal stream error beyond).",
            above=0),
    Setting("GATEWAY_CLIENT_WRITE_TIMEOUT_SECONDS", "float",
            float(TIMEOUTS.client_write_seconds), Source.LOCAL,
            "Longest one write to the client may block (client not reading): the exchange is "
            "cut, the slot freed.", above=0),
    Setting("GATEWAY_REQUEST_BODY_TIMEOUT_SECONDS", "float",
            float(TIMEOUTS.request_body_seconds), Source.LOCAL,
            "Longest wait for a request body after its headers (408 beyond).", above=0),
    Setting("GATEWAY_STREAM_PING_SECONDS", "float", float(TIMEOUTS.stream_ping_seconds),
            Source.LOCAL, "Silence after which an OpenAI stream gets a ': ping' comment.",
            above=0),
    Setting("GATEWAY_GRACEFUL_SHUTDOWN_SECONDS", "float",
            float(TIMEOUTS.graceful_shutdown_seconds), Source.LOCAL,
            "uvicorn's --timeout-graceful-shutdown (the same number): streams still open just "
            "before it ends get a terminal error event.", minimum=0),
    Setting("GATEWAY_READY_CACHE_SECONDS", "float", 2.0, Source.LOCAL,
            "How long /readyz reuses its last look at Ollama's /api/ps.", minimum=0),
    Setting("GATEWAY_METRIC_INTERVAL_SECONDS", "float", float(METRIC_EMIT_INTERVAL_SECONDS),
            Source.LOCAL, "How often the InFlightRequests gauge is written.", above=0),
)

SETTINGS_BY_ENV = {setting.env: setting for setting in SETTINGS}


def field_name(env: str) -> str:
    """The Settings field of a variable: lower case, without GATEWAY_ (GATEWAY_MODELS -> models)."""
    return env.lower().removeprefix("gateway_")


def setting(env: str) -> Setting:
    return SETTINGS_BY_ENV[env]


def settings_from(source: Source) -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if s.source is source)


KINDS = ("str", "int", "float", "bool", "csv")
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (float,), "bool": (bool,), "csv": (tuple,)}


def declaration_problems(settings: tuple[Setting, ...] = SETTINGS) -> list[str]:
    """What is wrong with the declarations themselves (generate.py refuses to run on any)."""
    problems = []
    seen: set[str] = set()
    for item in settings:
        if item.env in seen:
            problems.append(f"{item.env} is declared twice")
        seen.add(item.env)
        if item.kind not in KINDS:
            problems.append(f"{item.env}: kind {item.kind!r} is not one of {', '.join(KINDS)}")
            continue
        if not isinstance(item.default, _PYTHON_TYPES[item.kind]) or (
                item.kind in ("int", "float") and isinstance(item.default, bool)):
            problems.append(f"{item.env}: default {item.default!r} is not of kind {item.kind}")
            continue
        problems += [f"{problem} (its own default {item.default!r} is not)"
                     for problem in item.problems(item.default)]
        if item.root_parameter and item.source not in (Source.SSM, Source.TASK):
            problems.append(f"{item.env}: only SSM and TASK settings take a root parameter")
    return problems


# ---------------------------------------------------------------------------------------------
# uvicorn. The image's CMD carries no number: uvicorn's CLI reads every option it is not given
# from UVICORN_<OPTION> (click's auto_envvar_prefix="UVICORN" on uvicorn.main:main, uvicorn
# 0.54.0 uvicorn/main.py line 61; click 8.5.1 Option.resolve_envvar_value builds
# f"{prefix}_{name.upper()}"; https://www.uvicorn.org/settings "Environment Variables"). The
# task definition (stacks/service.py) and compose (gateway.env, written by generate.py) set
# these, so the keep-alive and the drain follow the timeout budget.
# ---------------------------------------------------------------------------------------------


def uvicorn_environment(budget: TimeoutBudget = TIMEOUTS) -> dict[str, str]:
    """UVICORN_* variable -> value, for the task's Environment and the compose env file."""
    return {
        # Longer than the ALB idle timeout, or the ALB reuses a connection uvicorn just closed.
        "UVICORN_TIMEOUT_KEEP_ALIVE": str(budget.keep_alive_seconds),
        # Without it uvicorn waits for open streams forever after SIGTERM.
        "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": str(budget.graceful_shutdown_seconds),
    }
