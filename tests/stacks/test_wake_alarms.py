"""Scale-to-zero's alarms over traffic: minutes of requests go through the rendered listener
(tests/stacks/alb_sim.py), give the ALB's metrics, and the rendered alarms judge them
(tests/stacks/alarm_eval.py). moto runs no alarm, so this is where their behaviour is held.

Container Insights' RunningTaskCount is modelled at its least helpful: no datapoint at all while
the service runs no task."""

from __future__ import annotations

import pytest

from tests.cfn import rendered
from tests.stacks import alarm_eval, alb_sim
from tools import params

ENV = "dev"  # the environment with scale-to-zero on (asserted below)
KEY = {"Authorization": "Bearer k1"}
CRAWLER = [alb_sim.Request(path) for path in ("/", "/robots.txt", "/.env", "/v1/models",
                                              "/api/tags", "/readyz", "/wp-login.php")]


def alarms() -> dict[str, dict]:
    service = rendered(ENV)["service.json"]["Resources"]
    return {name: service[name]["Properties"] for name in ("IdleAlarm", "WakeAlarm")}


def judge(name: str, minutes: list[list[alb_sim.Request]], tasks: list[int]) -> alarm_eval.State:
    lb = rendered(ENV)["load_balancer.json"]
    rules = alb_sim.rules_from_template(lb, "HttpsListener", "ListenerArn")
    alb = alb_sim.metrics(rules, minutes, tasks)
    running = [float(n) if n else None for n in tasks]

    def lookup(namespace, metric, dimensions):
        if namespace == "ECS/ContainerInsights" and metric == "RunningTaskCount":
            return running
        if namespace == "AWS/ApplicationELB":
            return alb.get((metric, dimensions), [None] * len(minutes))
        raise AssertionError(f"no model of {namespace} {metric}: add it before alarming on it")

    return alarm_eval.state(alarms()[name], lookup)


IDLE = int(params.load_env(ENV)["IdleMinutes"])
LONG = IDLE + 5

# (scenario, minutes of requests, registered tasks per minute, alarm, expected state)
SCENARIOS = [
    ("a crawler at zero tasks wakes nothing", [CRAWLER * 3] * 5, [0] * 5, "WakeAlarm", "OK"),
    ("a crawler at zero tasks keeps the service idle", [CRAWLER * 3] * LONG, [0] * LONG,
     "IdleAlarm", "ALARM"),
    ("a crawler beside a running idle task does not keep it", [CRAWLER] * LONG, [1] * LONG,
     "IdleAlarm", "ALARM"),
    ("an authenticated request at zero tasks wakes it",
     [[]] * 4 + [[alb_sim.Request("/v1/models", KEY)]], [0] * 5, "WakeAlarm", "ALARM"),
    ("after the wake, with tasks running, the 503s of a minute ago do not cut the service",
     [[alb_sim.Request("/v1/models", KEY)] * 3] * 2 + [[alb_sim.Request("/v1/models", KEY)]],
     [0, 0, 2], "WakeAlarm", "OK"),
    ("a client retrying during a wake keeps the service from idling",
     [[alb_sim.Request("/v1/chat/completions", KEY)]] * LONG, [0] * LONG, "IdleAlarm", "OK"),
    ("served traffic keeps the service from idling",
     [[alb_sim.Request("/api/chat", KEY)]] * LONG, [1] * LONG, "IdleAlarm", "OK"),
    ("nothing at all for IdleMinutes idles it", [[]] * LONG, [1] * LONG, "IdleAlarm", "ALARM"),
]


def test_the_scenarios_run_where_scale_to_zero_is_on():
    assert params.load_env(ENV)["ScaleToZero"] == "true"


@pytest.mark.parametrize("scenario, minutes, tasks, alarm, expected", SCENARIOS,
                         ids=[s[0] for s in SCENARIOS])
def test_scale_to_zero_alarms_over_traffic(scenario, minutes, tasks, alarm, expected):
    result = judge(alarm, minutes, tasks)
    assert result.value == expected, (scenario, result)
    if result.value == "ALARM":
        # An Auto Scaling action picks its step from the alarm's datapoint (StateReasonData,
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html):
        # ALARM on missing data alone hands it none.
        assert result.datapoint is not None, (scenario, result)


# -- the evaluator itself ----------------------------------------------------------------------


def _alarm(expression=None, metric=None, threshold=1.0, op="GreaterThanOrEqualToThreshold",
           periods=1, missing="notBreaching"):
    alarm = {"Threshold": threshold, "ComparisonOperator": op, "EvaluationPeriods": periods,
             "DatapointsToAlarm": periods, "TreatMissingData": missing}
    if expression is None:
        return alarm | {"Namespace": "N", "MetricName": metric, "Dimensions": []}
    queries = [{"Id": i, "MetricStat": {"Metric": {"Namespace": "N", "MetricName": i,
                                                   "Dimensions": []}}} for i in ("a", "b")]
    return alarm | {"Metrics": queries + [{"Id": "e", "Expression": expression,
                                           "ReturnData": True}]}


@pytest.mark.parametrize("alarm, a, b, expected", [
    # the most recent real datapoint counts when the latest are missing (evaluation range N + 2)
    (_alarm(metric="a"), [5, None, None], None, ("ALARM", 5)),
    (_alarm(metric="a"), [5, None, None, None], None, ("OK", None)),
    (_alarm(metric="a", missing="breaching", op="LessThanOrEqualToThreshold", threshold=0),
     [None, None], None, ("ALARM", None)),
    # FILL fills only where some metric reported; TIME_SERIES is everywhere
    (_alarm("FILL(a, 0) + FILL(b, 0)", op="LessThanOrEqualToThreshold", threshold=0,
            missing="breaching"), [None, None], [None, None], ("ALARM", None)),
    (_alarm("TIME_SERIES(0) + FILL(a, 0) + FILL(b, 0)", op="LessThanOrEqualToThreshold",
            threshold=0, missing="breaching"), [None, None], [None, None], ("ALARM", 0.0)),
    (_alarm("IF(FILL(b, 0) < 1, FILL(a, 0), 0)"), [3, None], [None, 2], ("OK", 0.0)),
    (_alarm("IF(FILL(b, 0) < 1, FILL(a, 0), 0)"), [None, 3], [None, None], ("ALARM", 3.0)),
    (_alarm("a - FILL(b, 0)", threshold=10), [12, None], [3, None], ("OK", 9.0)),
])
def test_alarm_evaluation_follows_the_documented_rules(alarm, a, b, expected):
    series = {"a": a, "b": b or [None] * len(a)}
    state = alarm_eval.state(alarm, lambda _ns, name, _dims: series[name])
    assert (state.value, state.datapoint) == expected
