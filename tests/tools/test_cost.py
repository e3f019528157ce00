"""tools.cost: one test per component against a figure computed by hand, floor and ceiling.

The hand figures use a small made-up price book (round prices, so the arithmetic is readable)
and a fixed set of facts; a second table checks the shipped environments against the committed
price file (prices/us-east-1.json) where the arithmetic is short.
"""

from __future__ import annotations

import json

import pytest

from stacks.endpoints import INTERFACE_SERVICES
from stacks.gpu import GPUS_PER_INSTANCE
from tests.cfn import REPO
from tools import params
from tools.cost import estimate as est
from tools.cost import facts as facts_mod
from tools.cost import prices as prices_mod
from tools.cost import report
from tools.cost.__main__ import main
from tools.cost.schedule import Phase

H = 730
GIB = 1024 ** 3
BOOK = {"ec2.g5.xlarge": 1.0, "ebs.gp3": 0.1, "cw.metric": 0.3, "nat.hour": 0.05, "nat.gb": 0.05,
        "ipv4.hour": 0.005, "alb.hour": 0.02, "alb.lcu": 0.01, "vpce.hour": 0.01, "vpce.gb": 0.01,
        "kms.key": 1.0, "secret": 0.4, "logs.ingest": 0.5, "logs.vended": 0.25,
        "logs.storage": 0.03, "cw.alarm": 0.1, "cw.dashboard": 3.0, "s3.standard": 0.02,
        "s3.put": 0.005, "ecr.storage": 0.1, "route53.zone": 0.5, "route53.query": 0.4,
        "dto.internet": 0.09, "waf.acl": 5.0, "waf.rule": 1.0, "waf.request": 0.6}


def _book(prices=BOOK, spot=None) -> prices_mod.PriceBook:
    entries = {k: {"usd": v, "verified": "secondary"} for k, v in prices.items()}
    return prices_mod.PriceBook(region="us-east-1", prices=entries, spot=spot or {})


def _facts(**changes) -> facts_mod.Facts:
    values = dict(
        env="t", region="us-east-1", instance_type="g5.xlarge", gpus_per_instance=1,
        gpus_per_task=1, root_volume_gb=100, root_volume_type="gp3", detailed_monitoring=True,
        asg_min=1, asg_max=4, warm_pool_min=1, warm_pool_max_prepared=2, task_min=1, task_max=3,
        deploy_max_percent=200, schedule=[Phase(1, 3, 1.0)], requests_per_target_per_minute=10,
        nat_gateways=2, public_ipv4_eips=2, albs=1, alb_public_azs=2, alb_access_logs=True,
        interface_endpoint_azs=4, interface_endpoint_names=["logs", "ssm"], kms_keys=1,
        secrets=1, log_groups=[("Logs", 30)], flow_logs_to_cloudwatch=1, alarm_metrics=5,
        alarms=4, dashboards=1, container_insights=True, custom_metrics=4,
        ecr_images_kept={"p/gateway": 10, "p/ollama": 10}, dns_records=1, web_acls=1,
        waf_rules=3)
    values.update(changes)
    return facts_mod.Facts(**values)


# Ceiling traffic: 3 tasks x 730 h x 60 min x 10 requests/min = 1,314,000 requests a month.
REQ = 3 * H * 60 * 10
LOG_GB = REQ * 1 / 1024 ** 2 + 3 * H * 0.5 / 1024          # 1 KB/request + 0.5 MB/task-hour
LOG_GB_FLOOR = 1 * H * 0.5 / 1024
CI_GB, CI_GB_FLOOR = 3 * H * 2 / 1024, 1 * H * 2 / 1024     # 2 MB/task-hour
FLOW_GB = 1 + REQ * 600 / GIB                               # 1 GB base + 600 B/request
KEPT_MONTHS = 30 / 30.4

HAND = [
    # component, floor, ceiling (floor: 1 task, 1 instance; ceiling: 3 tasks, 3 instances)
    ("GPU instances (On-Demand)", 1 * H * 1.0, 3 * H * 1.0),
    ("Root volumes (EBS)", 1 * 100 * 0.1, 3 * 100 * 0.1),
    # warm pool = max(MinSize 1, MaxGroupPreparedCapacity 2 - desired): 1 at both
    ("Warm pool (stopped: EBS only)", 1 * 100 * 0.1, 1 * 100 * 0.1),
    ("EC2 detailed monitoring", 1 * 7 * 0.3, 3 * 7 * 0.3),
    ("NAT gateways (hourly)", 2 * H * 0.05, 2 * H * 0.05),
    # logs go through the logs endpoint, so NAT carries 5 GB per instance-month only
    ("NAT gateways (data)", 1 * 5 * 0.05, 3 * 5 * 0.05),
    ("Public IPv4 addresses", (2 + 2) * H * 0.005, (2 + 2) * H * 0.005),
    ("Load balancer (hourly)", H * 0.02, H * 0.02),
    # new connections dominate: 0.5 requests/s / 25 per LCU = 0.02 LCU for 730 h
    ("Load balancer (LCUs)", 0.0, REQ / (H * 3600) / 25 * H * 0.01),
    ("Interface endpoints (hourly)", 4 * H * 0.01, 4 * H * 0.01),
    ("Interface endpoints (data)", (LOG_GB_FLOOR + CI_GB_FLOOR) * 0.01, (LOG_GB + CI_GB) * 0.01),
    ("KMS keys", 1.0, 1.0),
    ("Secrets Manager", 0.4, 0.4),
    ("CloudWatch Logs (ingestion)", LOG_GB_FLOOR * 0.5 + 1 * 0.25, LOG_GB * 0.5 + FLOW_GB * 0.25),
    ("CloudWatch Logs (storage)", (LOG_GB_FLOOR + 1 + CI_GB_FLOOR) * KEPT_MONTHS * 0.03,
     (LOG_GB + FLOW_GB + CI_GB) * KEPT_MONTHS * 0.03),
    ("Container Insights", 33 * 0.3 + CI_GB_FLOOR * 0.5, 33 * 0.3 + CI_GB * 0.5),
    ("CloudWatch alarms", 5 * 0.1, 5 * 0.1),
    ("CloudWatch dashboards", 3.0, 3.0),
    ("Custom metrics (gateway EMF)", 4 * 0.3, 4 * 0.3),
    # 300 B/request, 12 months held; 12 objects per hour per ALB node (2 AZs)
    ("ALB access logs (S3)", 2 * H * 12 / 1000 * 0.005,
     REQ * 300 / GIB * 12 * 0.02 + 2 * H * 12 / 1000 * 0.005),
    ("ECR storage", (10 * 0.15 + 10 * 3.0) * 0.1, (10 * 0.15 + 10 * 3.0) * 0.1),
    ("Route 53", 0.5, 0.5),
    ("Data transfer out", 0.0, REQ * 4 / 1024 ** 2 * 0.09),
    ("WAF", 5 + 3 * 1.0, 5 + 3 * 1.0 + REQ / 1e6 * 0.6),
]


@pytest.fixture(scope="module")
def hand_estimate() -> est.Estimate:
    return est.build(_facts(), _book(), est.assumptions())


@pytest.mark.parametrize(("component", "floor", "ceiling"), HAND, ids=[row[0] for row in HAND])
def test_component_matches_hand_figure(hand_estimate, component, floor, ceiling):
    line = next(x for x in hand_estimate.lines if x.component == component)
    assert line.floor == pytest.approx(floor, rel=1e-9, abs=1e-9)
    assert line.ceiling == pytest.approx(ceiling, rel=1e-9, abs=1e-9)


def test_every_component_has_a_hand_figure(hand_estimate):
    assert [x.component for x in hand_estimate.lines] == [row[0] for row in HAND]


def test_schedule_weights_the_floor_and_the_ceiling():
    # 60% of hours at 0 tasks (ASG min 0 -> no instance), 40% at 2-3 tasks.
    facts = _facts(asg_min=0, schedule=[Phase(0, 0, 0.6), Phase(2, 3, 0.4)])
    gpu = next(x for x in est.build(facts, _book(), est.assumptions()).lines
               if x.component.startswith("GPU"))
    assert (gpu.floor, gpu.ceiling) == pytest.approx((0.4 * 2 * H, 0.4 * 3 * H))


def test_without_endpoints_logs_travel_through_nat():
    facts = _facts(interface_endpoint_azs=0, interface_endpoint_names=[])
    lines = {x.component: x for x in est.build(facts, _book(), est.assumptions()).lines}
    assert "Interface endpoints (hourly)" not in lines
    assert lines["NAT gateways (data)"].ceiling == pytest.approx((3 * 5 + LOG_GB + CI_GB) * 0.05)


def test_surge_is_stated_apart():
    estimate = est.build(_facts(), _book(), est.assumptions())
    # 3 tasks at 200% -> 6 tasks, capped by AsgMaxSize 4: 1 extra instance; 1 task -> 2: 1 extra.
    assert "adds up to 1 instance(s) at the floor / 1 at the ceiling" in estimate.surge
    assert "$1.00 / $1.00 per hour" in estimate.surge


def test_spot_line_names_the_price_and_its_timestamp():
    spot = {"prices": {"g5.xlarge": {"us-east-1a": {"usd": 0.4, "timestamp": "2026-11-29T10:00:00+00:00"},
                                     "us-east-1b": {"usd": 0.5, "timestamp": "2026-11-29T11:00:00+00:00"}}}}
    estimate = est.build(_facts(), _book(spot=spot), est.assumptions())
    assert "$0.5/h (highest AZ us-east-1b, 2026-11-29T11:00:00+00:00)" in estimate.spot
    assert f"${1 * H * 0.5:.2f} at the floor and ${3 * H * 0.5:.2f} at the ceiling" in estimate.spot


@pytest.mark.parametrize(("overrides", "message"), [
    ({"nat_gb": "1"}, "unknown assumption 'nat_gb'; known: floor_requests_per_month"),
    ({"response_kb": "lots"}, "assumption response_kb='lots' is not a number"),
])
def test_bad_assumptions_are_named(overrides, message):
    with pytest.raises(est.AssumptionError, match=message):
        est.assumptions(overrides)


def test_assumption_override_moves_its_line():
    base = est.build(_facts(), _book(), est.assumptions())
    more = est.build(_facts(), _book(), est.assumptions({"nat_gb_per_instance_month": "100"}))
    pick = lambda e: next(x for x in e.lines if x.component == "NAT gateways (data)")  # noqa: E731
    assert pick(more).ceiling == pytest.approx(3 * 100 * 0.05)
    assert pick(base).ceiling != pick(more).ceiling


# --- the shipped environments, with the committed price file ------------------------------------

PRICE_FILE = json.loads((prices_mod.PRICES_DIR / "us-east-1.json").read_text())["prices"]
# The figures follow from the shipped values, read where they are set: the params files (the
# effective values), the endpoint list and the generated web ACL.
DEV, PROD = params.load_env("dev"), params.load_env("prod")
AZS = len(PROD["AvailabilityZones"].split(","))
ENDPOINTS = len(INTERFACE_SERVICES)
WAF_RULES = len(json.loads((REPO / "templates" / "load_balancer.json").read_text())
                ["Resources"]["WebAcl"]["Properties"]["Rules"])


def price(key: str) -> float:
    return PRICE_FILE[key]["usd"]


def gpu_hour(values: dict[str, str]) -> float:
    assert GPUS_PER_INSTANCE[values["InstanceType"]] == 1, "one task per instance below"
    return price(f"ec2.{values['InstanceType']}")


def number(values: dict[str, str], key: str) -> int:
    return int(values[key])


# dev: at most ServiceMaxTasks tasks 07:00-20:00 UTC on weekdays, 0 otherwise; 2027 has 261
# weekdays. With scale-to-zero on, the floor (idle) is 0 tasks at every hour.
DEV_ON_SHARE = 261 * 13 / (365 * 24)
ENVS = [
    ("dev", "GPU instances (On-Demand)", 0.0,
     DEV_ON_SHARE * number(DEV, "ServiceMaxTasks") * H * gpu_hour(DEV)),
    ("dev", "NAT gateways (hourly)", 1 * H * price("nat.hour"), 1 * H * price("nat.hour")),
    # dev's warm pool (the wake budget needs it): its stopped instances' volumes at every hour
    ("dev", "Warm pool (stopped: EBS only)",
     number(DEV, "WarmPoolMinSize") * number(DEV, "RootVolumeSizeGiB") * price("ebs.gp3"),
     number(DEV, "WarmPoolMinSize") * number(DEV, "RootVolumeSizeGiB") * price("ebs.gp3")),
    ("prod", "GPU instances (On-Demand)", number(PROD, "ServiceMinTasks") * H * gpu_hour(PROD),
     number(PROD, "ServiceMaxTasks") * H * gpu_hour(PROD)),
    ("prod", "Warm pool (stopped: EBS only)",
     number(PROD, "WarmPoolMinSize") * number(PROD, "RootVolumeSizeGiB") * price("ebs.gp3"),
     number(PROD, "WarmPoolMinSize") * number(PROD, "RootVolumeSizeGiB") * price("ebs.gp3")),
    ("prod", "Interface endpoints (hourly)", ENDPOINTS * AZS * H * price("vpce.hour"),
     ENDPOINTS * AZS * H * price("vpce.hour")),
    # a NAT gateway's EIP per AZ (per-az mode) and the ALB's address in each AZ
    ("prod", "Public IPv4 addresses", (AZS + AZS) * H * price("ipv4.hour"),
     (AZS + AZS) * H * price("ipv4.hour")),
    ("prod", "WAF", price("waf.acl") + WAF_RULES * price("waf.rule"),
     price("waf.acl") + WAF_RULES * price("waf.rule")
     + number(PROD, "ServiceMaxTasks") * H * 60 * number(PROD, "RequestsPerTargetPerMinute")
     / 1e6 * price("waf.request")),
]


@pytest.fixture(scope="module")
def shipped() -> dict[str, est.Estimate]:
    return report.estimates()


@pytest.mark.parametrize(("env", "component", "floor", "ceiling"), ENVS,
                         ids=[f"{e}-{c}" for e, c, *_ in ENVS])
def test_shipped_environment_component(shipped, env, component, floor, ceiling):
    line = next(x for x in shipped[env].lines if x.component == component)
    assert (line.floor, line.ceiling) == pytest.approx((floor, ceiling), rel=1e-3)


def _dev(**overrides) -> tuple[facts_mod.Facts, est.Estimate]:
    facts = facts_mod.collect("dev", values=params.load_env("dev") | overrides)
    return facts, est.build(facts, prices_mod.load("us-east-1"), est.assumptions())


def test_scale_to_zero_drops_the_floor_by_the_gpu_instances():
    (on_facts, on), (off_facts, off) = _dev(ScaleToZero="true"), _dev(ScaleToZero="false")
    idle = number(DEV, "IdleMinutes")
    assert (on_facts.idle_minutes, off_facts.idle_minutes) == (idle, None)
    gpu = lambda e: next(x for x in e.lines if x.component.startswith("GPU instances"))  # noqa: E731
    assert gpu(off).floor == pytest.approx(
        DEV_ON_SHARE * number(DEV, "ServiceMaxTasks") * H * gpu_hour(DEV), rel=1e-3)
    assert gpu(on).floor == 0.0 and gpu(on).ceiling == pytest.approx(gpu(off).ceiling)
    assert off.floor - on.floor >= gpu(off).floor  # and the volumes, logs of the idle task
    assert f"idle: 0 tasks after {idle} min without a request" in gpu(on).basis


def test_throughput_above_the_included_is_named_as_unpriced():
    (base_facts, base), (fast_facts, fast) = _dev(), _dev(RootVolumeThroughputMiBps="400")
    assert (base_facts.root_volume_throughput, fast_facts.root_volume_throughput) == (
        facts_mod.GP3_INCLUDED_THROUGHPUT, 400)
    volumes = lambda e: next(x for x in e.lines if x.component == "Root volumes (EBS)")  # noqa: E731
    assert "not priced" not in volumes(base).basis
    assert "275 MiB/s of throughput above the included 125 are not priced" in volumes(fast).basis


def test_facts_see_the_spot_group():
    assert _dev(SpotInstances="true")[0].spot is True
    assert _dev(SpotInstances="false")[0].spot is False


SPOT = {"prices": {"g5.xlarge": {"us-east-1a": {"usd": 0.4, "timestamp": "2026-11-29T10:00:00+00:00"}}}}


def test_spot_group_is_priced_at_the_dated_spot_figure():
    line = est.build(_facts(spot=True), _book(spot=SPOT), est.assumptions()).lines[0]
    assert line.component == "GPU instances (Spot)"
    assert (line.floor, line.ceiling) == pytest.approx((1 * H * 0.4, 3 * H * 0.4))
    assert "2026-11-29T10:00:00+00:00" in line.basis


def test_spot_group_without_a_spot_price_shows_on_demand_as_the_upper_bound():
    line = est.build(_facts(spot=True), _book(), est.assumptions()).lines[0]
    assert line.component == "GPU instances (On-Demand)"
    assert (line.floor, line.ceiling) == pytest.approx((1 * H * 1.0, 3 * H * 1.0))
    assert "no Spot price (refresh: make cost-prices REGION=us-east-1)" in line.basis


def test_dev_has_no_waf_and_no_endpoints(shipped):
    names = {x.component for x in shipped["dev"].lines}
    assert not names & {"WAF", "Interface endpoints (hourly)", "Interface endpoints (data)"}


def test_cli_prints_the_table_with_overrides(capsys):
    assert main(["dev", "--assume", "nat_gb_per_instance_month=100"]) == 0
    out = capsys.readouterr().out
    assert "Monthly estimate for dev (us-east-1" in out and "nat_gb_per_instance_month=100*" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["nosuch"], "no params file for environment 'nosuch'"),
    (["dev", "--assume", "nat_gb"], "write name=value"),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cost_change_reports_moves_only(shipped):
    assert report.cost_change(shipped, shipped) == []
    head = dict(shipped)
    head["prod"] = est.build(facts_mod.collect("prod"), prices_mod.load("us-east-1"),
                             est.assumptions({"nat_gb_per_instance_month": "105"}))
    lines = report.cost_change(shipped, head)
    # 2 instance-months at the floor x 100 GB more x $0.045 = +9.00
    assert len(lines) == 1 and lines[0].startswith("prod: floor $")
    assert "NAT gateways (data) +9.00 / +18.00" in lines[0]


def test_the_generated_cost_table_has_a_floor_and_ceiling_column_per_environment(shipped):
    table = report.readme_section(shipped)
    assert table.splitlines()[0] == ("| component | " + " | ".join(
        f"{env} floor | {env} ceiling" for env in params.environments()) + " |")
    assert f"**{shipped['prod'].ceiling:.2f}**" in table


def test_log_storage_holds_at_most_a_year_of_logs():
    facts = _facts(log_groups=[("Logs", 3653)])
    line = next(x for x in est.build(facts, _book(), est.assumptions()).lines
                if x.component == "CloudWatch Logs (storage)")
    assert line.ceiling == pytest.approx((LOG_GB + FLOW_GB + CI_GB) * 12 * 0.03)
