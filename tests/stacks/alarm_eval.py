"""An offline evaluator of CloudWatch alarms over per-minute datapoints: the metric-math subset the
templates use, and the alarm-state rules for missing data.

Metric math (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html):
arithmetic treats a missing value as 0 ("Missing values in a time series are treated as 0") where
the other operand has one; a comparison between a series and a scalar is missing where the series
is; IF(c, a, b) is a where c is true (0 where a is missing), b where it is false (missing where b
is); FILL(m, v) fills the missing values of m; TIME_SERIES(s) is "a non-sparse time series where
every value is set to a scalar argument". One assumption, stated because the page does not say
it: a series has timestamps only where some metric of the alarm has a datapoint (or everywhere
with TIME_SERIES), so FILL over minutes in which no metric reported anything yields nothing.

Alarm state (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html,
"How alarm state is evaluated when data is missing"): CloudWatch looks at an evaluation range a
little longer than EvaluationPeriods (the page's example: 5 for 3; here N + 2); with at least N
real datapoints it evaluates the most recent N real ones; with fewer it fills the rest per
TreatMissingData and includes every real one. The value an Auto Scaling action gets
(StateReasonData) is the most recent real datapoint, None when there is none.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

Series = list[float | None]
COMPARISONS = {"GreaterThanOrEqualToThreshold": operator.ge, "GreaterThanThreshold": operator.gt,
               "LessThanOrEqualToThreshold": operator.le, "LessThanThreshold": operator.lt}
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(<=|>=|==|!=|[-+*/<>(),]))")


class _Parser:
    def __init__(self, text: str, series: dict[str, Series], stamps: set[int], length: int):
        self.tokens = [m.group(m.lastindex) for m in _TOKEN.finditer(text)]
        if "".join(self.tokens) != re.sub(r"\s+", "", text):
            raise ValueError(f"cannot tokenize {text!r}")
        self.series, self.stamps, self.n, self.pos = series, stamps, length, 0

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        if expected is not None and token != expected:
            raise ValueError(f"expected {expected!r}, got {token!r}")
        self.pos += 1
        return token

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self):
        value = self.comparison()
        if self.peek() is not None:
            raise ValueError(f"unparsed {self.tokens[self.pos:]}")
        return value

    def comparison(self):
        left = self.sum()
        ops = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
               "==": operator.eq, "!=": operator.ne}
        if self.peek() in ops:
            op = ops[self.take()]
            right = self.sum()
            return self.combine(left, right, lambda a, b: float(op(a, b)), missing_zero=False)
        return left

    def sum(self):
        value = self.product()
        while self.peek() in ("+", "-"):
            op = operator.add if self.take() == "+" else operator.sub
            value = self.combine(value, self.product(), op)
        return value

    def product(self):
        value = self.atom()
        while self.peek() in ("*", "/"):
            op = operator.mul if self.take() == "*" else operator.truediv
            value = self.combine(value, self.atom(), op)
        return value

    def atom(self):
        token = self.take()
        if token == "(":
            value = self.comparison()
            self.take(")")
            return value
        if re.fullmatch(r"\d+(?:\.\d+)?", token):
            return float(token)
        if self.peek() == "(":
            self.take("(")
            args = [self.comparison()]
            while self.peek() == ",":
                self.take(",")
                args.append(self.comparison())
            self.take(")")
            return self.call(token, args)
        return list(self.series[token])

    def call(self, name: str, args: list):
        if name == "TIME_SERIES":
            self.stamps.update(range(self.n))  # non-sparse
            return [args[0]] * self.n
        if name == "FILL":
            series, value = args
            return [(v if v is not None else value) if i in self.stamps else None
                    for i, v in enumerate(series)]
        if name == "IF":
            cond, then, other = (self.broadcast(a) for a in args)
            return [None if c is None else ((t if t is not None else 0.0) if c else o)
                    for c, t, o in zip(cond, then, other, strict=True)]
        raise ValueError(f"metric-math function {name} has no semantics here")

    def broadcast(self, value) -> Series:
        if isinstance(value, list):
            return value
        return [value if i in self.stamps else None for i in range(self.n)]

    def combine(self, left, right, op, missing_zero: bool = True):
        if not isinstance(left, list) and not isinstance(right, list):
            return op(left, right)
        a, b = self.broadcast(left), self.broadcast(right)
        out: Series = []
        for x, y in zip(a, b, strict=True):
            absent = (x is None, y is None)
            if all(absent) or (any(absent) and not missing_zero):
                out.append(None)
            else:
                out.append(op(x or 0.0, y or 0.0))
        return out


@dataclass(frozen=True)
class State:
    value: str  # ALARM, OK, INSUFFICIENT_DATA
    datapoint: float | None  # what StateReasonData hands an Auto Scaling action


def datapoints(alarm: dict, lookup) -> Series:
    """The series an alarm (rendered Properties) evaluates. lookup(namespace, metric name,
    dimension names) -> Series for every metric the alarm reads."""
    if "Metrics" not in alarm:
        return lookup(alarm["Namespace"], alarm["MetricName"],
                      frozenset(d["Name"] for d in alarm["Dimensions"]))
    series, expression = {}, None
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            series[query["Id"]] = lookup(metric["Namespace"], metric["MetricName"],
                                         frozenset(d["Name"] for d in metric["Dimensions"]))
        if query.get("ReturnData"):
            expression = query["Expression"]
    length = len(next(iter(series.values())))
    stamps = {i for s in series.values() for i, v in enumerate(s) if v is not None}
    if "TIME_SERIES" in expression:  # non-sparse, wherever it stands in the expression
        stamps = set(range(length))
    result = _Parser(expression, series, stamps, length).parse()
    return result if isinstance(result, list) else [result] * length


def state(alarm: dict, lookup, previous: str = "INSUFFICIENT_DATA") -> State:
    points = datapoints(alarm, lookup)
    n, m = int(alarm["EvaluationPeriods"]), int(alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]))
    window = points[-(n + 2):]
    real = [p for p in window if p is not None]
    breaches = COMPARISONS[alarm["ComparisonOperator"]]
    threshold = float(alarm["Threshold"])
    latest = real[-1] if real else None
    if len(real) >= n:
        judged = [breaches(p, threshold) for p in real[-n:]]
    else:
        missing = alarm.get("TreatMissingData", "missing")
        if missing in ("missing", "ignore") and not real:
            return State("INSUFFICIENT_DATA" if missing == "missing" else previous, None)
        fill = {"breaching": [True], "notBreaching": [False]}.get(missing, [])
        judged = [breaches(p, threshold) for p in real] + fill * (n - len(real))
    return State("ALARM" if sum(judged) >= m else "OK", latest)
