"""The HTTPS listener's auth gate: only a request that carries a bearer key reaches a task.

The load balancer cannot check a key (it never sees the secret, and a key in a listener rule
would be a secret in the template), but it can answer every request that carries none itself,
so that a crawler or a scanner (the domain is in public certificate transparency logs) neither
reaches a task nor counts in the scaling signals. Rules are evaluated in priority order, lowest
first, and the default action runs when no rule matches
(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-listeners.html,
"Rule priority", "Default rules"):

1. FORWARD_PRIORITY: `Authorization: Bearer *` -> forward to the target group. "The header name
   and the match evaluation are not case-sensitive", `*` matches 0 or more characters
   (same page, "HTTP header conditions"), as the gateway reads the scheme case-insensitively
   (app/middleware.py, AuthMiddleware). The gateway still checks the key itself.
2. OPENAI_PRIORITY: path `/v1/*` -> 401 in the OpenAI error shape (app/errors.py: /v1/ routes).
3. default action -> 401 in the Ollama error shape (every other path, as app/errors.py).

Both bodies are the gateway's own 401 with no request id (the load balancer has none to give):
a client of either API family reads the same error whether the gateway or the load balancer
answered. A fixed response takes a body of at most 1024 characters and one of five content
types (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_FixedResponseActionConfig.html);
it carries no headers, so unlike the gateway's 401 there is no WWW-Authenticate.

/healthz and /readyz from outside: the same as any path (401 without a bearer key; forwarded
with one, where the gateway answers them without checking it). The target group's own health
checks go from each load balancer node straight to the targets, with the target group's
settings (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html),
so no listener rule applies to them.
"""

from __future__ import annotations

import json

from troposphere import Ref
from troposphere import elasticloadbalancingv2 as elb

AUTH_HEADER = "Authorization"
BEARER_PATTERN = "Bearer *"
OPENAI_PATH_PATTERN = "/v1/*"
FORWARD_PRIORITY = 1
OPENAI_PRIORITY = 2
FORWARD_RULE = "BearerForwardRule"
OPENAI_RULE = "OpenAiUnauthorizedRule"
STATUS = "401"
MESSAGE = "unauthorized"  # app/middleware.py AuthMiddleware
CODE = "invalid_api_key"
CONTENT_TYPE = "application/json"
MAX_BODY = 1024  # FixedResponseActionConfig.MessageBody


def body(style: str) -> str:
    """The gateway's 401 body (app/errors.py error_body) with no request id, compact JSON."""
    if style == "openai":
        payload: dict = {"error": {"message": MESSAGE, "type": "invalid_request_error",
                                   "param": None, "code": CODE, "request_id": None}}
    elif style == "ollama":
        payload = {"error": MESSAGE, "request_id": None}
    else:
        raise ValueError(f"unknown API style {style!r}; known: openai, ollama")
    text = json.dumps(payload, separators=(",", ":"))
    if len(text) > MAX_BODY:  # pragma: no cover - a constant above changed
        raise ValueError(f"fixed-response body of {len(text)} characters; ELB allows {MAX_BODY}")
    return text


def _fixed(style: str) -> elb.FixedResponseConfig:
    return elb.FixedResponseConfig(StatusCode=STATUS, ContentType=CONTENT_TYPE,
                                   MessageBody=body(style))


def unauthorized(style: str) -> elb.Action:
    """The listener's default action: the 401 of the API family that is not /v1/."""
    return elb.Action(Type="fixed-response", FixedResponseConfig=_fixed(style))


def add_rules(t, listener, target_group) -> None:
    """The two rules of the gate on the HTTPS listener (whose default action is the 401)."""
    t.add_resource(elb.ListenerRule(
        FORWARD_RULE, ListenerArn=Ref(listener), Priority=FORWARD_PRIORITY,
        Conditions=[elb.Condition(Field="http-header", HttpHeaderConfig=elb.HttpHeaderConfig(
            HttpHeaderName=AUTH_HEADER, Values=[BEARER_PATTERN]))],
        Actions=[elb.ListenerRuleAction(Type="forward", TargetGroupArn=Ref(target_group))],
    ))
    t.add_resource(elb.ListenerRule(
        OPENAI_RULE, ListenerArn=Ref(listener), Priority=OPENAI_PRIORITY,
        Conditions=[elb.Condition(Field="path-pattern", PathPatternConfig=elb.PathPatternConfig(
            Values=[OPENAI_PATH_PATTERN]))],
        Actions=[elb.ListenerRuleAction(Type="fixed-response",
                                        FixedResponseConfig=_fixed("openai"))],
    ))
