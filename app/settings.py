"""The gateway's Settings: one typed field per declaration in app.contract.SETTINGS.

The field list between the `generated:settings-fields` markers is written by `generate.py` from
the declarations (`generate.py --check` fails while it is stale), so adding a setting is one
declaration in app/contract.py plus `make generate`, and mypy sees every field with its type.
Only the field's name and type are written here; its environment variable, default,
description and bounds are read from the declaration when this module is imported, and a field
list that no longer matches the declarations stops the import (a stale file cannot start).

A field's environment variable is the declared name (exactly, case-sensitive); its Python name
is that name in lower case without the ``GATEWAY_`` prefix (``GATEWAY_MAX_CONCURRENCY`` ->
``settings.max_concurrency``). Comma-separated ("csv") settings are split explicitly on commas,
entries stripped, empty entries dropped; pydantic-settings' JSON decoding is off for them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app import contract
from app.contract import field_name


class ConfigurationError(ValueError):
    """The environment does not describe a gateway that may start (message is one line)."""


def split_csv(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("expected a comma-separated string")
    return tuple(str(item).strip() for item in items if str(item).strip())


Csv = Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_csv)]
# kind -> the type of its field (tools/contract_files.py writes the annotations).
_PYTHON_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool,
                                 "csv": tuple[str, ...]}


def declared(env: str) -> Any:
    """The pydantic field of one declaration: its variable, default and description."""
    item = contract.setting(env)
    return Field(default=item.default, validation_alias=env, description=item.description,
                 repr=item.source is not contract.Source.SECRET)


class Settings(BaseSettings):
    """Gateway settings, one field per app.contract.SETTINGS declaration."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
    )

    # BEGIN generated:settings-fields (generate.py, from app.contract.SETTINGS; do not edit)
    ollama_base_url: str = declared("OLLAMA_BASE_URL")
    api_keys: Csv = declared("GATEWAY_API_KEYS")
    auth_disabled: bool = declared("GATEWAY_AUTH_DISABLED")
    models: Csv = declared("GATEWAY_MODELS")
    max_body_bytes: int = declared("GATEWAY_MAX_BODY_BYTES")
    max_output_tokens: int = declared("GATEWAY_MAX_OUTPUT_TOKENS")
    context_tokens: int = declared("GATEWAY_CONTEXT_TOKENS")
    max_concurrency: int = declared("GATEWAY_MAX_CONCURRENCY")
    queue_timeout_seconds: float = declared("GATEWAY_QUEUE_TIMEOUT_SECONDS")
    cors_origins: Csv = declared("GATEWAY_CORS_ORIGINS")
    docs_enabled: bool = declared("GATEWAY_DOCS_ENABLED")
    log_level: str = declared("GATEWAY_LOG_LEVEL")
    cluster_name: str = declared("GATEWAY_CLUSTER_NAME")
    service_name: str = declared("GATEWAY_SERVICE_NAME")
    upstream_connect_timeout_seconds: float = declared("GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS")
    upstream_read_timeout_seconds: float = declared("GATEWAY_UPSTREAM_READ_TIMEOUT_SECONDS")
    upstream_total_timeout_seconds: float = declared("GATEWAY_UPSTREAM_TOTAL_TIMEOUT_SECONDS")
    client_write_timeout_seconds: float = declared("GATEWAY_CLIENT_WRITE_TIMEOUT_SECONDS")
    request_body_timeout_seconds: float = declared("GATEWAY_REQUEST_BODY_TIMEOUT_SECONDS")
    stream_ping_seconds: float = declared("GATEWAY_STREAM_PING_SECONDS")
    graceful_shutdown_seconds: float = declared("GATEWAY_GRACEFUL_SHUTDOWN_SECONDS")
    ready_cache_seconds: float = declared("GATEWAY_READY_CACHE_SECONDS")
    metric_interval_seconds: float = declared("GATEWAY_METRIC_INTERVAL_SECONDS")
    # END generated:settings-fields

    @model_validator(mode="after")
    def _within_declared_bounds(self) -> Settings:
        problems = [problem for item in contract.SETTINGS
                    for problem in item.problems(getattr(self, field_name(item.env)))]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # Derived values -----------------------------------------------------------------------

    @property
    def default_model(self) -> str:
        return self.models[0]

    @property
    def keys(self) -> tuple[str, ...]:
        """The active API keys (never logged; Settings' repr hides them)."""
        return self.api_keys


def drift(settings: tuple[contract.Setting, ...] = contract.SETTINGS) -> list[str]:
    """How Settings' fields differ from the declarations (empty when they match)."""
    fields = Settings.model_fields
    wanted = {field_name(s.env): s for s in settings}
    problems = [f"field {name} has no declaration" for name in sorted(set(fields) - set(wanted))]
    for name, item in wanted.items():
        field = fields.get(name)
        if field is None:
            problems.append(f"{item.env} has no field {name}")
        elif field.annotation != _PYTHON_TYPES[item.kind]:
            problems.append(f"field {name} is {field.annotation}, {item.env} is a {item.kind}")
    return problems


_STALE = drift()
if _STALE:
    raise ImportError("app/settings.py does not match app/contract.py (run `make generate`): "
                      + "; ".join(_STALE))

_ENV_BY_FIELD = {field_name(s.env): s.env for s in contract.SETTINGS}


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (plus overrides by field name), or ConfigurationError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            location = ".".join(str(part) for part in error["loc"])
            location = _ENV_BY_FIELD.get(location, location)
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{location}: {message}" if location else message)
        raise ConfigurationError("; ".join(problems)) from None
