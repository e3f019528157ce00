"""The gateway's Settings, generated from the declarations in app.contract.

Each contract.Setting becomes one field: its environment variable is the declared name (exactly,
case-sensitive), its Python name is that name in lower case without the ``GATEWAY_`` prefix
(``GATEWAY_MAX_CONCURRENCY`` -> ``settings.max_concurrency``), its default is the declared one.
Comma-separated ("csv") settings are split explicitly on commas, entries stripped, empty entries
dropped; pydantic-settings' JSON decoding of list-like values is switched off for them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, create_model, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app import contract


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
_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "csv": Csv}


def field_name(env: str) -> str:
    name = env.lower()
    return name.removeprefix("gateway_")


class _SettingsBase(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
    )

    @model_validator(mode="after")
    def _check(self) -> _SettingsBase:
        values = self.__dict__
        problems = []
        if not values["models"]:
            problems.append("GATEWAY_MODELS must name at least one model")
        positive = ("max_body_bytes", "max_output_tokens", "context_tokens", "max_concurrency",
                    "upstream_connect_timeout_seconds", "upstream_read_timeout_seconds",
                    "upstream_total_timeout_seconds", "stream_ping_seconds",
                    "client_write_timeout_seconds", "request_body_timeout_seconds",
                    "metric_interval_seconds")
        for name in positive:
            if values[name] <= 0:
                problems.append(f"{_ENV_BY_FIELD[name]} must be greater than 0")
        for name in ("queue_timeout_seconds", "graceful_shutdown_seconds", "ready_cache_seconds"):
            if values[name] < 0:
                problems.append(f"{_ENV_BY_FIELD[name]} must not be negative")
        if not str(values["ollama_base_url"]).startswith(("http://", "https://")):
            problems.append("OLLAMA_BASE_URL must start with http:// or https://")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # Derived values -----------------------------------------------------------------------

    @property
    def default_model(self) -> str:
        return self.__dict__["models"][0]

    @property
    def keys(self) -> tuple[str, ...]:
        """The active API keys (never logged; Settings' repr hides them)."""
        return self.__dict__["api_keys"]


def _fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for declared in contract.SETTINGS:
        if declared.kind not in _TYPES:
            raise TypeError(f"{declared.env}: unknown kind {declared.kind!r}")
        fields[field_name(declared.env)] = (
            _TYPES[declared.kind],
            Field(
                default=declared.default,
                validation_alias=declared.env,
                description=declared.description,
                repr=declared.source is not contract.Source.SECRET,
            ),
        )
    return fields


_ENV_BY_FIELD = {field_name(s.env): s.env for s in contract.SETTINGS}

Settings = create_model("Settings", __base__=_SettingsBase, **_fields())
Settings.__doc__ = "Gateway settings, one field per app.contract.SETTINGS declaration."


def load_settings(**overrides: Any) -> Any:
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
