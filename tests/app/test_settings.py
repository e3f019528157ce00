"""Settings: one typed field per app.contract.SETTINGS declaration, read from the environment,
csv explicit, bounds from the declarations."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from app import contract
from app.settings import (
    ConfigurationError,
    Settings,
    drift,
    field_name,
    load_settings,
    split_csv,
)
from tests.cfn import REPO
from tools.contract_files import field_lines

# A value of each kind that no declared bound refuses, and what it parses to.
SAMPLES = {"str": "x-value", "int": "7", "float": "0.25", "bool": "true", "csv": "a, b,,c"}
PARSED = {"str": "x-value", "int": 7, "float": 0.25, "bool": True, "csv": ("a", "b", "c")}
VALID_STR = {"OLLAMA_BASE_URL": "http://127.0.0.1:1", "GATEWAY_LOG_LEVEL": "warning"}


def test_one_field_per_declared_setting_with_the_declared_default():
    fields = Settings.model_fields
    assert len(fields) == len(contract.SETTINGS)
    for declared in contract.SETTINGS:
        field = fields[field_name(declared.env)]
        assert field.validation_alias == declared.env
        assert field.default == declared.default


def test_every_setting_is_read_from_its_environment_variable(monkeypatch):
    for declared in contract.SETTINGS:
        monkeypatch.setenv(declared.env, VALID_STR.get(declared.env, SAMPLES[declared.kind]))
    settings = load_settings()
    for declared in contract.SETTINGS:
        got = getattr(settings, field_name(declared.env))
        assert got == VALID_STR.get(declared.env, PARSED[declared.kind]), declared.env


def test_every_field_has_the_python_type_of_its_declared_kind():
    # What mypy sees: the class annotations (strings under `from __future__ import annotations`).
    hints = typing.get_type_hints(Settings, include_extras=False)
    kinds = {"str": str, "int": int, "float": float, "bool": bool, "csv": tuple[str, ...]}
    for declared in contract.SETTINGS:
        assert hints[field_name(declared.env)] == kinds[declared.kind], declared.env
    assert drift() == []


def test_the_field_list_is_the_generated_one():
    text = (REPO / "app" / "settings.py").read_text()
    body = re.search(r"# BEGIN generated:settings-fields[^\n]*\n(.*?)\n *# END generated:settings-fields",
                     text, re.DOTALL)
    assert body, "markers missing in app/settings.py"
    assert [line.strip() for line in body.group(1).splitlines()] == field_lines()


def test_a_field_list_that_misses_a_declaration_is_named():
    extra = contract.Setting("GATEWAY_NEW_KNOB", "int", 3, contract.Source.SSM, "A new knob.")
    assert drift((*contract.SETTINGS, extra)) == ["GATEWAY_NEW_KNOB has no field new_knob"]
    retyped = tuple(dataclasses.replace(s, kind="float", default=4.0)
                    if s.env == "GATEWAY_MAX_CONCURRENCY" else s for s in contract.SETTINGS)
    assert drift(retyped) == [
        "field max_concurrency is <class 'int'>, GATEWAY_MAX_CONCURRENCY is a float"]
    fewer = tuple(s for s in contract.SETTINGS if s.env != "GATEWAY_DOCS_ENABLED")
    assert drift(fewer) == ["field docs_enabled has no declaration"]


def test_names_are_exact_not_prefix_free_or_lower_case(monkeypatch):
    monkeypatch.delenv("GATEWAY_MAX_CONCURRENCY", raising=False)
    monkeypatch.setenv("MAX_CONCURRENCY", "9")
    monkeypatch.setenv("gateway_max_concurrency", "9")
    assert load_settings().max_concurrency == contract.setting("GATEWAY_MAX_CONCURRENCY").default


def test_csv_is_split_on_commas_not_json_decoded(monkeypatch):
    monkeypatch.setenv("GATEWAY_MODELS", '["a","b"]')
    assert load_settings().models == ('["a"', '"b"]')
    monkeypatch.setenv("GATEWAY_API_KEYS", " k1 ,k2, ")
    assert load_settings().keys == ("k1", "k2")
    assert split_csv("") == () and split_csv(["a", " "]) == ("a",)


def test_keys_are_not_in_the_repr(monkeypatch):
    monkeypatch.setenv("GATEWAY_API_KEYS", "sekrit-canary-key")
    settings = load_settings()
    assert "sekrit-canary-key" not in repr(settings)
    assert "sekrit-canary-key" not in str(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ""}, "GATEWAY_MODELS must name at least 1 entry"),
        ({"max_concurrency": 0}, "GATEWAY_MAX_CONCURRENCY must be greater than 0"),
        ({"max_concurrency": "many"}, "GATEWAY_MAX_CONCURRENCY"),
        ({"ollama_base_url": "127.0.0.1:11434"}, "OLLAMA_BASE_URL must start with http://"),
        ({"queue_timeout_seconds": -1}, "GATEWAY_QUEUE_TIMEOUT_SECONDS must not be negative"),
        ({"stream_ping_seconds": 0.0}, "GATEWAY_STREAM_PING_SECONDS must be greater than 0"),
        ({"ready_cache_seconds": -0.5}, "GATEWAY_READY_CACHE_SECONDS must not be negative"),
        ({"log_level": "loud"}, "GATEWAY_LOG_LEVEL must be one of debug, info, warning"),
    ],
)
def test_bad_values_name_the_variable(overrides, message):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_local_timeouts_default_to_the_budget():
    settings = load_settings()
    assert settings.upstream_connect_timeout_seconds == contract.TIMEOUTS.upstream_connect_seconds
    assert settings.upstream_read_timeout_seconds == contract.TIMEOUTS.first_token_seconds
    assert settings.upstream_total_timeout_seconds == contract.TIMEOUTS.max_generation_seconds
    assert settings.stream_ping_seconds == contract.TIMEOUTS.stream_ping_seconds
    assert settings.graceful_shutdown_seconds == contract.TIMEOUTS.graceful_shutdown_seconds
    assert settings.metric_interval_seconds == contract.METRIC_EMIT_INTERVAL_SECONDS
    for env in ("GATEWAY_UPSTREAM_READ_TIMEOUT_SECONDS", "GATEWAY_STREAM_PING_SECONDS",
                "GATEWAY_GRACEFUL_SHUTDOWN_SECONDS", "GATEWAY_METRIC_INTERVAL_SECONDS"):
        assert contract.setting(env).source is contract.Source.LOCAL


def test_every_bound_the_declarations_carry_is_enforced():
    # Table-driven from the declarations: a value just outside each bound is refused, naming
    # the variable; the bound itself (inclusive ones) is accepted.
    cases = 0
    for declared in contract.SETTINGS:
        name = field_name(declared.env)
        outside, inside = [], []
        if declared.kind in ("int", "float"):
            step = 1 if declared.kind == "int" else 0.5
            if declared.above is not None:
                outside.append(declared.above)
            if declared.minimum is not None:
                outside.append(declared.minimum - step)
                inside.append(declared.minimum)
            if declared.maximum is not None:
                outside.append(declared.maximum + step)
                inside.append(declared.maximum)
        elif declared.kind == "csv" and declared.minimum:
            outside.append(",".join(["m"] * (int(declared.minimum) - 1)))
        elif declared.kind == "str" and declared.choices:
            outside.append("no-such-choice")
            inside += [choice.upper() for choice in declared.choices]
        for value in outside:
            with pytest.raises(ConfigurationError, match=declared.env):
                load_settings(**{name: value})
            cases += 1
        for value in inside:
            load_settings(**{name: value})
    assert cases >= 16  # the positive numbers, the non-negative ones, the models, the level


def test_the_defaults_lie_within_their_own_bounds():
    assert contract.declaration_problems() == []
    load_settings()  # the declared defaults start a gateway
