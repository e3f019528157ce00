"""Settings are generated from app.contract.SETTINGS, read from the environment, csv explicit."""

from __future__ import annotations

import pytest

from app import contract
from app.settings import ConfigurationError, Settings, field_name, load_settings, split_csv


def test_one_field_per_declared_setting_with_the_declared_default():
    fields = Settings.model_fields
    assert len(fields) == len(contract.SETTINGS)
    for declared in contract.SETTINGS:
        field = fields[field_name(declared.env)]
        assert field.validation_alias == declared.env
        assert field.default == declared.default


def test_every_setting_is_read_from_its_environment_variable(monkeypatch):
    samples = {"str": "x-value", "int": "7", "float": "0.25", "bool": "true", "csv": "a, b,,c"}
    expected = {"str": "x-value", "int": 7, "float": 0.25, "bool": True, "csv": ("a", "b", "c")}
    for declared in contract.SETTINGS:
        value = samples[declared.kind]
        if declared.env == "OLLAMA_BASE_URL":
            value = "http://127.0.0.1:1"
        monkeypatch.setenv(declared.env, value)
    settings = load_settings()
    for declared in contract.SETTINGS:
        got = getattr(settings, field_name(declared.env))
        if declared.env == "OLLAMA_BASE_URL":
            assert got == "http://127.0.0.1:1"
        else:
            assert got == expected[declared.kind], declared.env


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
        ({"models": ""}, "GATEWAY_MODELS must name at least one model"),
        ({"max_concurrency": 0}, "GATEWAY_MAX_CONCURRENCY must be greater than 0"),
        ({"max_concurrency": "many"}, "GATEWAY_MAX_CONCURRENCY"),
        ({"ollama_base_url": "127.0.0.1:11434"}, "OLLAMA_BASE_URL must start with http://"),
        ({"queue_timeout_seconds": -1}, "GATEWAY_QUEUE_TIMEOUT_SECONDS must not be negative"),
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
