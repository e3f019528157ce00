"""How many hours a month the service's scheduled actions keep each (min, max) task range.

Application Auto Scaling scheduled actions take `cron(Minutes Hours Day-of-month Month
Day-of-week Year)`, `at(...)` and `rate(...)`
(https://docs.aws.amazon.com/autoscaling/application/userguide/scheduled-scaling-using-cron-expressions.html).
The cost model replays the cron actions over a reference year (2027, after a warm-up year so the
state at 1 January is what the schedule left it in) and returns the share of time in each range.
Time zones move the hours, not their share (daylight-saving shifts of one hour are ignored).
`at()` happens once and `rate()` has no range of its own: both are refused with a clear error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
WARM_UP, REFERENCE = datetime(2026, 1, 1), (datetime(2027, 1, 1), datetime(2028, 1, 1))


class ScheduleError(ValueError):
    """A schedule the cost model cannot weigh; the message names it and what is supported."""


@dataclass(frozen=True)
class Phase:
    min_tasks: int
    max_tasks: int
    share: float  # of all hours


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> set[int]:
    if text in ("*", "?"):
        return set(range(low, high + 1))
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = names.get(a) or int(a), names.get(b) or int(b)
        else:
            start = names.get(part) or int(part)
            end = high if "/" in text else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleError(f"cron {what} {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def cron_times(expression: str, start: datetime, end: datetime) -> list[datetime]:
    match = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if not match:
        raise ScheduleError(f"schedule {expression!r}: the cost model weighs cron() schedules only "
                            "(at() runs once, rate() keeps no range); use cron(...)")
    parts = match.group(1).split()
    if len(parts) != 6:
        raise ScheduleError(f"schedule {expression!r}: cron needs 6 fields "
                            "(Minutes Hours Day-of-month Month Day-of-week Year)")
    minute, hour, dom, month, dow, year = parts
    if any(ch in dom + dow for ch in "LW#"):
        raise ScheduleError(f"schedule {expression!r}: L, W and # are not supported by the cost model")
    minutes, hours = _field(minute, 0, 59, {}, "minutes"), _field(hour, 0, 23, {}, "hours")
    days, months = _field(dom, 1, 31, {}, "day-of-month"), _field(month, 1, 12, MONTHS, "month")
    weekdays = _field(dow, 1, 7, DAYS, "day-of-week")
    years = None if year in ("*", "?") else _field(year, 1970, 2199, {}, "year")
    times = []
    day = start
    while day < end:
        # Python: Monday=0; cron: Sunday=1.
        if (day.day in days and day.month in months and (day.weekday() + 1) % 7 + 1 in weekdays
                and (years is None or day.year in years)):
            times += [day.replace(hour=h, minute=m) for h in sorted(hours) for m in sorted(minutes)]
        day += timedelta(days=1)
    return times


def phases(min_tasks: int, max_tasks: int, actions: list[dict]) -> list[Phase]:
    """Share of the reference year spent in each (min, max) range, largest share first."""
    if not actions:
        return [Phase(min_tasks, max_tasks, 1.0)]
    events = []
    for action in actions:
        target = action.get("ScalableTargetAction", {})
        for when in cron_times(action["Schedule"], WARM_UP, REFERENCE[1]):
            events.append((when, target.get("MinCapacity"), target.get("MaxCapacity")))
    events.sort(key=lambda event: event[0])
    state, spent = (min_tasks, max_tasks), {}
    cursor = REFERENCE[0]
    for when, new_min, new_max in events + [(REFERENCE[1], None, None)]:
        if when > cursor and when > REFERENCE[0]:
            begin = max(cursor, REFERENCE[0])
            spent[state] = spent.get(state, 0.0) + (when - begin).total_seconds()
            cursor = when
        if new_min is None and new_max is None:
            continue
        low = state[0] if new_min is None else int(new_min)
        high = state[1] if new_max is None else int(new_max)
        state = (low, max(low, high))
    total = (REFERENCE[1] - REFERENCE[0]).total_seconds()
    return sorted((Phase(lo, hi, seconds / total) for (lo, hi), seconds in spent.items()),
                  key=lambda phase: -phase.share)
