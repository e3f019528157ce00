"""The HTTPS listener's auth gate (stacks/auth_gate.py), evaluated offline over the rendered
templates: a request without a bearer key gets the listener's 401, in the gateway's own error
shape for its path; a request with one is forwarded. tests/stacks/alb_sim.py is the evaluator
(priority order, http-header wildcards, the default action) and is itself tested here."""

from __future__ import annotations

from functools import cache

import pytest

from app import errors
from stacks import auth_gate
from stacks.load_balancer import HEALTH_CHECK_PATH
from tests.cfn import generated, rendered
from tests.stacks import alb_sim
from tools import params

LISTENER, OUTPUT = "HttpsListener", "ListenerArn"


@cache
def rendered_rules(env: str) -> tuple[list[alb_sim.Rule], str]:
    template = rendered(env)["load_balancer.json"]
    group = template["Outputs"]["TargetGroupArn"]["Value"]
    return alb_sim.rules_from_template(template, LISTENER, OUTPUT), group


def curl(env: str, path: str, **headers: str) -> dict:
    """What `curl -H ... https://<DomainName><path>` gets from the listener."""
    rules, _ = rendered_rules(env)
    return alb_sim.evaluate(rules, alb_sim.Request(path, headers))


def gateway_401(path: str) -> str:
    """The gateway's own 401 body for this path (app/errors.py), with no request id."""
    style = errors.api_style(path)
    return errors.error_body(style, 401, auth_gate.MESSAGE, None, auth_gate.CODE).decode()


# (path, headers, forwarded?) -- curl without a key, with one, and near misses.
CASES = [
    ("/v1/models", {}, False),
    ("/v1/chat/completions", {"Authorization": "Basic dXNlcjpwYXNz"}, False),
    ("/api/tags", {}, False),
    ("/api/chat", {"X-Api-Key": "k1"}, False),
    ("/healthz", {}, False),
    (HEALTH_CHECK_PATH, {}, False),
    ("/", {}, False),
    ("/V1/models", {}, False),  # path patterns are case-sensitive: the Ollama shape, as the gateway
    ("/v1", {}, False),
    ("/v1/models", {"Authorization": "Bearer"}, False),  # no space, no key
    ("/v1/models", {"Authorization": "Bearer k1"}, True),
    ("/api/chat", {"Authorization": "Bearer k1"}, True),
    ("/v1/models", {"authorization": "bearer k1"}, True),  # header name and value: any case
    ("/v1/models", {"AUTHORIZATION": "BEARER k1"}, True),
    (HEALTH_CHECK_PATH, {"Authorization": "Bearer k1"}, True),
    ("/v1/models", {"Authorization": "Bearer "}, True),  # forwarded; the gateway answers 401
]


@pytest.mark.parametrize("env", params.environments())
@pytest.mark.parametrize("path, headers, forwarded", CASES)
def test_only_a_request_with_a_bearer_key_is_forwarded(env, path, headers, forwarded):
    action = curl(env, path, **headers)
    _, group = rendered_rules(env)
    if forwarded:
        assert action == {"Type": "forward", "TargetGroupArn": group}
        return
    assert action["Type"] == "fixed-response", action
    config = action["FixedResponseConfig"]
    assert config["StatusCode"] == "401" and config["ContentType"] == "application/json"
    assert config["MessageBody"] == gateway_401(path)  # the gateway's shape for this path


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_the_gates_bodies_are_the_gateways_401_and_fit_a_fixed_response(style):
    body = auth_gate.body(style)
    path = "/v1/models" if style == "openai" else "/api/tags"
    assert body == gateway_401(path)
    assert len(body) <= auth_gate.MAX_BODY


def test_no_rule_but_the_gate_and_none_on_the_http_listener():
    lb = generated()["load_balancer.json"]["Resources"]
    rules = {name: body["Properties"] for name, body in lb.items()
             if body["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"}
    assert set(rules) == {auth_gate.FORWARD_RULE, auth_gate.OPENAI_RULE}
    assert all(r["ListenerArn"] == {"Ref": LISTENER} for r in rules.values())
    priorities = [r["Priority"] for r in rules.values()]
    assert len(set(priorities)) == len(priorities)


# -- the evaluator itself ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern, value, case_sensitive, matches", [
    ("Bearer *", "Bearer abc", False, True),
    ("Bearer *", "bearer abc", False, True),
    ("Bearer *", "Bearer abc", True, True),
    ("Bearer *", "bearer abc", True, False),
    ("Bearer *", "Bearer", False, False),
    ("Bearer *", "Bearer ", False, True),
    ("Bearer *", "xBearer abc", False, False),
    ("a?c", "abc", True, True),
    ("a?c", "ac", True, False),
    ("/v1/*", "/v1/", True, True),
    ("/v1/*", "/v1", True, False),
    ("a.c", "abc", True, False),  # only * and ? are special
    ("a+", "aa", True, False),
])
def test_wildcards_match_as_elb_documents(pattern, value, case_sensitive, matches):
    assert alb_sim.wildcard(pattern, value, case_sensitive) is matches


def test_rules_run_in_priority_order_and_the_default_last():
    forward = {"Type": "forward", "TargetGroupArn": "tg"}
    deny = {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "403"}}
    header = {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X", "Values": ["1"]}}
    path = {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/a*"]}}
    default = {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}
    rules = alb_sim.rules_from_api([
        {"Priority": "default", "Conditions": [], "Actions": [default]},
        {"Priority": "20", "Conditions": [path], "Actions": [deny]},
        {"Priority": "10", "Conditions": [header, path], "Actions": [forward]},  # both must hold
    ])
    evaluate = lambda p, **h: alb_sim.evaluate(rules, alb_sim.Request(p, h))  # noqa: E731
    assert evaluate("/ab", X="1") == forward
    assert evaluate("/ab", X="2") == deny
    assert evaluate("/b", X="1") == default


def test_an_unknown_condition_type_fails_loudly():
    rules = [alb_sim.Rule(1, [{"Field": "source-ip", "SourceIpConfig": {"Values": ["10/8"]}}],
                          [{"Type": "forward"}])]
    with pytest.raises(ValueError, match="source-ip"):
        alb_sim.evaluate(rules, alb_sim.Request("/"))
