"""app/contract.py: the timeout budget's inequalities and the settings declarations."""

from __future__ import annotations

import dataclasses
import re

import pytest

from app import contract
from app.contract import TIMEOUTS, Source, TimeoutBudget


def test_the_shipped_budget_is_sound():
    assert TIMEOUTS.violations() == []


def test_derived_values_keep_their_order():
    t = TIMEOUTS
    assert t.alb_idle_timeout_seconds >= t.max_generation_seconds > t.first_token_seconds
    assert t.keep_alive_seconds > t.alb_idle_timeout_seconds
    assert t.deregistration_delay_seconds >= t.max_generation_seconds
    assert t.container_stop_timeout_seconds > t.graceful_shutdown_seconds
    assert t.stream_ping_seconds < t.first_token_seconds < t.alb_idle_timeout_seconds


# Each change is relative to the shipped budget (tests/test_one_edit.py raises its numbers).
_BASE = TimeoutBudget()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"first_token_seconds": _BASE.max_generation_seconds + 100},
         "first-token timeout must be shorter"),
        ({"stream_ping_seconds": _BASE.first_token_seconds + 80},
         "stream ping interval must be shorter"),
        ({"upstream_connect_seconds": _BASE.first_token_seconds + 10},
         "upstream connect timeout must be shorter"),
        ({"max_generation_seconds": 3990}, "ALB idle timeout must be at most 4000"),
        ({"graceful_shutdown_seconds": 118}, "container stop timeout must be at most 120"),
        ({"client_write_seconds": 0}, "client write bound must be positive"),
        ({"client_write_seconds": _BASE.max_generation_seconds},
         "client write bound must be positive and shorter"),
        ({"client_write_seconds": _BASE.first_token_seconds + 1},
         "client write bound must not exceed the first-token"),
        ({"request_body_seconds": 0}, "request body timeout must be positive"),
        ({"request_body_seconds": _BASE.alb_idle_timeout_seconds},
         "request body timeout must be positive and shorter"),
    ],
)
def test_a_broken_budget_names_the_inequality(change, message):
    budget = dataclasses.replace(TimeoutBudget(), **change)
    assert any(message in v for v in budget.violations()), budget.violations()


def test_the_gateway_reads_the_write_and_body_bounds_from_the_budget():
    assert contract.setting("GATEWAY_CLIENT_WRITE_TIMEOUT_SECONDS").default == float(
        TIMEOUTS.client_write_seconds)
    assert contract.setting("GATEWAY_REQUEST_BODY_TIMEOUT_SECONDS").default == float(
        TIMEOUTS.request_body_seconds)


def test_setting_names_are_unique_and_shaped():
    envs = [s.env for s in contract.SETTINGS]
    assert len(envs) == len(set(envs))
    for s in contract.SETTINGS:
        assert re.fullmatch(r"(GATEWAY|OLLAMA)_[A-Z0-9_]+", s.env), s.env
        assert s.kind in {"str", "int", "float", "bool", "csv"}, s.env
        assert s.description


def test_the_api_keys_come_only_from_the_secret():
    assert contract.setting("GATEWAY_API_KEYS").source is Source.SECRET
    assert [s.env for s in contract.settings_from(Source.SECRET)] == ["GATEWAY_API_KEYS"]


def test_ssm_settings_have_values_ssm_accepts():
    for s in contract.settings_from(Source.SSM):
        assert s.default_text != "" or s.root_parameter, s.env
        assert len(s.default_text) <= 4096


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [("bool", True, "true"), ("bool", False, "false"), ("csv", ("a", "b"), "a,b"),
     ("csv", (), ""), ("int", 3, "3"), ("float", 1.5, "1.5"), ("str", "x", "x")],
)
def test_render_value(kind, value, text):
    assert contract.render_value(kind, value) == text


# -- bounds in the declarations ----------------------------------------------------------------

KNOB = contract.Setting("GATEWAY_KNOB", "int", 3, Source.SSM, "A knob.")


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        (dataclasses.replace(KNOB, above=3), "GATEWAY_KNOB must be greater than 3"),
        (dataclasses.replace(KNOB, minimum=4), "GATEWAY_KNOB must be at least 4"),
        (dataclasses.replace(KNOB, default=-1, minimum=0), "GATEWAY_KNOB must not be negative"),
        (dataclasses.replace(KNOB, maximum=2), "GATEWAY_KNOB must be at most 2"),
        (dataclasses.replace(KNOB, kind="csv", default=(), minimum=1),
         "GATEWAY_KNOB must name at least 1 entry"),
        (dataclasses.replace(KNOB, kind="str", default="loud", choices=("info",)),
         "GATEWAY_KNOB must be one of info"),
        (dataclasses.replace(KNOB, kind="str", default="ftp://x", prefixes=("http://",)),
         "GATEWAY_KNOB must start with http://"),
        (dataclasses.replace(KNOB, kind="float"), "GATEWAY_KNOB: default 3 is not of kind float"),
        (dataclasses.replace(KNOB, default=True), "GATEWAY_KNOB: default True is not of kind int"),
        (dataclasses.replace(KNOB, kind="list"), "kind 'list' is not one of"),
        (dataclasses.replace(KNOB, source=Source.LOCAL, root_parameter="Knob"),
         "only SSM and TASK settings take a root parameter"),
    ],
)
def test_a_declaration_outside_its_own_bounds_is_named(declaration, problem):
    problems = contract.declaration_problems((declaration,))
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_name_declared_twice_is_named():
    assert contract.declaration_problems((KNOB, KNOB)) == ["GATEWAY_KNOB is declared twice"]


def test_bounds_accept_the_boundary_values_they_include():
    bounded = dataclasses.replace(KNOB, minimum=0, maximum=10)
    assert bounded.problems(0) == [] and bounded.problems(10) == []
    assert dataclasses.replace(KNOB, kind="str", choices=("info",)).problems("INFO") == []


def test_uvicorn_gets_the_budget_numbers():
    env = contract.uvicorn_environment()
    assert env == {"UVICORN_TIMEOUT_KEEP_ALIVE": str(TIMEOUTS.keep_alive_seconds),
                   "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": str(TIMEOUTS.graceful_shutdown_seconds)}
    longer = dataclasses.replace(TIMEOUTS, max_generation_seconds=600)
    assert contract.uvicorn_environment(longer)["UVICORN_TIMEOUT_KEEP_ALIVE"] == "635"
