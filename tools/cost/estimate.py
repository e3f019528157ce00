"""The monthly estimate: one line per component, at the floor and at the ceiling.

Floor: idle (no traffic), the service at its minimum tasks, weighted by the hours the scheduled
actions keep each minimum. Ceiling: steady state at the maximum tasks (same weighting) with the
traffic that keeps every task at the request-count scaling target. The deploy surge (extra
instances while a rolling deploy runs) is stated apart, per hour of deploy. A month is 730 hours.
Every usage figure is an assumption printed beside its line and overridable (ASSUMPTIONS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tools.cost.facts import GP3_INCLUDED_THROUGHPUT, Facts
from tools.cost.prices import PriceBook

HOURS_PER_MONTH = 730
GB = 1024 ** 3

# name -> (default, what it means). Override with --assume name=value or an assumptions file.
ASSUMPTIONS: dict[str, tuple[float, str]] = {
    "floor_requests_per_month": (0, "requests per month at the floor (idle)"),
    "ceiling_load": (1.0, "ceiling traffic as a share of the request-count scaling target per task"),
    "request_kb": (2, "KB per request, client to ALB"),
    "response_kb": (4, "KB per response, ALB to client (also data transfer out)"),
    "gateway_log_kb_per_request": (1.0, "gateway log KB per request (JSON line + EMF line)"),
    "log_mb_per_task_hour": (0.5, "container log MB per task-hour without requests"),
    "flow_log_gb_base": (1.0, "VPC flow log GB per month at idle (health checks, agents)"),
    "flow_log_bytes_per_request": (600, "flow log bytes per request (ALB and task ENI records)"),
    "access_log_bytes_per_request": (300, "ALB access log bytes stored per request (gzip)"),
    "access_log_put_per_alb_hour": (12, "access-log objects the ALB writes per hour per node"),
    "nat_gb_per_instance_month": (5, "NAT GB per instance-month (agent, SSM, OS updates)"),
    "image_gb_gateway": (0.15, "gateway image GB in ECR"),
    "image_gb_ollama": (3.0, "Ollama image GB in ECR (runtime + baked model)"),
    "images_pushed": (30, "images pushed per repository and kept (capped by the lifecycle policy)"),
    "container_insights_metrics": (33, "Container Insights metrics for one cluster+service+family"),
    "container_insights_mb_per_task_hour": (2, "Container Insights performance log MB per task-hour"),
    "detailed_monitoring_metrics": (7, "EC2 detailed-monitoring metrics per instance"),
    "hosted_zones": (1, "hosted zones billed to this stack (HostedZoneId is an existing zone)"),
    "dns_queries_per_request": (0.0, "billable DNS queries per request (alias to an ALB: free)"),
}


class AssumptionError(ValueError):
    """An unknown or non-numeric assumption; the message lists the known names."""


def assumptions(overrides: dict[str, str] | None = None) -> dict[str, float]:
    values = {name: float(default) for name, (default, _) in ASSUMPTIONS.items()}
    for name, text in (overrides or {}).items():
        if name not in ASSUMPTIONS:
            raise AssumptionError(f"unknown assumption {name!r}; known: {', '.join(ASSUMPTIONS)}")
        try:
            values[name] = float(text)
        except ValueError:
            raise AssumptionError(f"assumption {name}={text!r} is not a number") from None
    return values


@dataclass
class Line:
    component: str
    floor: float
    ceiling: float
    basis: str  # quantities and assumptions, printed beside the figures


@dataclass
class Estimate:
    env: str
    region: str
    lines: list[Line]
    surge: str
    assumed: dict[str, float]
    unverified_prices: list[str] = field(default_factory=list)
    spot: str = ""

    @property
    def floor(self) -> float:
        return sum(line.floor for line in self.lines)

    @property
    def ceiling(self) -> float:
        return sum(line.ceiling for line in self.lines)


def _weighted(facts: Facts, per_phase) -> float:
    """sum over schedule phases of share x per_phase(phase)."""
    return sum(phase.share * per_phase(phase) for phase in facts.schedule)


def build(facts: Facts, book: PriceBook, assumed: dict[str, float]) -> Estimate:
    a, p, H = assumed, book, HOURS_PER_MONTH
    lines: list[Line] = []
    add = lambda *args: lines.append(Line(*args))  # noqa: E731

    # Instance-months and task-months at the floor and the ceiling.
    inst = {"floor": _weighted(facts, lambda ph: facts.instances_for(ph.min_tasks)),
            "ceiling": _weighted(facts, lambda ph: facts.instances_for(ph.max_tasks))}
    tasks = {"floor": _weighted(facts, lambda ph: ph.min_tasks),
             "ceiling": _weighted(facts, lambda ph: ph.max_tasks)}
    hourly = p.instance_hour(facts.instance_type)
    sched = ", ".join(f"{ph.min_tasks}-{ph.max_tasks} tasks {ph.share:.1%} of hours"
                      for ph in facts.schedule)
    spot = book.spot_price(facts.instance_type)
    idle = (f"; idle: 0 tasks after {facts.idle_minutes} min without a request (scale-to-zero)"
            if facts.idle_minutes is not None else "")
    if facts.spot and spot:
        hourly = spot[0]
        gpu_label, priced = "GPU instances (Spot)", f"Spot ${hourly}/h (highest AZ {spot[1]}, {spot[2]})"
    else:
        gpu_label, priced = "GPU instances (On-Demand)", f"${hourly}/h"
        if facts.spot:
            priced += (" On-Demand as the upper bound: SpotInstances is on but the price file has "
                       f"no Spot price (refresh: make cost-prices REGION={facts.region})")
    add(gpu_label, inst["floor"] * H * hourly, inst["ceiling"] * H * hourly,
        f"{inst['floor']:.2f} / {inst['ceiling']:.2f} instance-months of {facts.instance_type} "
        f"at {priced} ({sched}{idle})")
    vol_price = p.usd(f"ebs.{facts.root_volume_type}")
    vol = facts.root_volume_gb * vol_price
    extra = facts.root_volume_throughput - GP3_INCLUDED_THROUGHPUT
    unpriced = (f"; the {extra} MiB/s of throughput above the included "
                f"{GP3_INCLUDED_THROUGHPUT} are not priced here" if extra > 0 else "")
    add("Root volumes (EBS)", inst["floor"] * vol, inst["ceiling"] * vol,
        f"{facts.root_volume_gb} GB {facts.root_volume_type} per running instance; deleted "
        f"with the instance{unpriced}")
    pool = {k: _weighted(facts, lambda ph, k=k: facts.warm_pool_size(
        facts.instances_for(ph.min_tasks if k == "floor" else ph.max_tasks)))
        for k in ("floor", "ceiling")}
    add("Warm pool (stopped: EBS only)", pool["floor"] * vol, pool["ceiling"] * vol,
        "no warm pool" if facts.warm_pool_min is None else
        f"{pool['floor']:.2f} / {pool['ceiling']:.2f} stopped instances x {facts.root_volume_gb} GB")
    if facts.detailed_monitoring:
        metric = p.usd("cw.metric")
        n = a["detailed_monitoring_metrics"]
        add("EC2 detailed monitoring", inst["floor"] * n * metric, inst["ceiling"] * n * metric,
            f"{n:g} metrics per instance-month [detailed_monitoring_metrics]")

    # Traffic: the ceiling keeps each task at the request-count target (x ceiling_load).
    requests = {"floor": a["floor_requests_per_month"],
                "ceiling": tasks["ceiling"] * H * 60 * facts.requests_per_target_per_minute
                * a["ceiling_load"]}
    gb = lambda k, kb: requests[k] * kb * 1024 / GB  # noqa: E731
    dto = {k: gb(k, a["response_kb"]) for k in requests}
    alb_gb = {k: gb(k, a["request_kb"] + a["response_kb"]) for k in requests}
    log_gb = {k: gb(k, a["gateway_log_kb_per_request"]) + tasks[k] * H
              * a["log_mb_per_task_hour"] / 1024 for k in requests}
    ci_gb = {k: (tasks[k] * H * a["container_insights_mb_per_task_hour"] / 1024
                 if facts.container_insights else 0.0) for k in requests}
    flow_gb = {k: (a["flow_log_gb_base"] + requests[k] * a["flow_log_bytes_per_request"] / GB)
               if facts.flow_logs_to_cloudwatch else 0.0 for k in requests}
    traffic = (f"{requests['floor']:,.0f} / {requests['ceiling']:,.0f} requests per month "
               f"[floor_requests_per_month; ceiling = tasks x "
               f"{facts.requests_per_target_per_minute:g}/min target x ceiling_load]")

    logs_via_endpoint = "logs" in facts.interface_endpoint_names
    nat_gb = {k: inst[k] * a["nat_gb_per_instance_month"] + (
        0.0 if logs_via_endpoint else log_gb[k] + ci_gb[k]) for k in requests}
    if facts.nat_gateways:
        nat_h = facts.nat_gateways * H * p.usd("nat.hour")
        add("NAT gateways (hourly)", nat_h, nat_h, f"{facts.nat_gateways} gateway(s) x {H} h")
        add("NAT gateways (data)", nat_gb["floor"] * p.usd("nat.gb"),
            nat_gb["ceiling"] * p.usd("nat.gb"),
            f"{nat_gb['floor']:.1f} / {nat_gb['ceiling']:.1f} GB [nat_gb_per_instance_month"
            f"{'' if logs_via_endpoint else ' + container logs: no logs endpoint'}]; ECR layers "
            "come from S3 through the gateway endpoint")
    ips = facts.alb_public_azs + facts.public_ipv4_eips
    ip_cost = ips * H * p.usd("ipv4.hour")
    add("Public IPv4 addresses", ip_cost, ip_cost,
        f"{facts.alb_public_azs} ALB (one per AZ) + {facts.public_ipv4_eips} NAT EIP(s)")
    if facts.albs:
        alb_h = facts.albs * H * p.usd("alb.hour")
        add("Load balancer (hourly)", alb_h, alb_h, f"{facts.albs} ALB x {H} h")
        # LCU-hours: the larger of processed bytes (1 GB/h per LCU) and new connections
        # (25/s per LCU), one connection per request; traffic spread evenly over the hours.
        lcu = {k: max(alb_gb[k] / H, requests[k] / H / 3600 / 25) * H for k in requests}
        add("Load balancer (LCUs)", lcu["floor"] * p.usd("alb.lcu"),
            lcu["ceiling"] * p.usd("alb.lcu"),
            f"{lcu['floor']:.1f} / {lcu['ceiling']:.1f} LCU-hours: {traffic}, "
            f"{a['request_kb']:g}+{a['response_kb']:g} KB each [request_kb, response_kb]")
    if facts.interface_endpoint_azs:
        vpce = facts.interface_endpoint_azs * H * p.usd("vpce.hour")
        add("Interface endpoints (hourly)", vpce, vpce,
            f"{len(facts.interface_endpoint_names)} endpoints, {facts.interface_endpoint_azs} "
            f"endpoint-AZs ({', '.join(facts.interface_endpoint_names)})")
        vgb = {k: (log_gb[k] + ci_gb[k]) if logs_via_endpoint else 0.0 for k in requests}
        add("Interface endpoints (data)", vgb["floor"] * p.usd("vpce.gb"),
            vgb["ceiling"] * p.usd("vpce.gb"),
            f"{vgb['floor']:.1f} / {vgb['ceiling']:.1f} GB of container logs through the logs endpoint")
    add("KMS keys", facts.kms_keys * p.usd("kms.key"), facts.kms_keys * p.usd("kms.key"),
        f"{facts.kms_keys} customer-managed key(s); requests within the free 20,000/month")
    add("Secrets Manager", facts.secrets * p.usd("secret"), facts.secrets * p.usd("secret"),
        f"{facts.secrets} secret(s); read at task start only")
    ingest = {k: log_gb[k] * p.usd("logs.ingest") + flow_gb[k] * p.usd("logs.vended")
              for k in requests}
    add("CloudWatch Logs (ingestion)", ingest["floor"], ingest["ceiling"],
        f"container {log_gb['floor']:.2f} / {log_gb['ceiling']:.2f} GB [gateway_log_kb_per_request,"
        f" log_mb_per_task_hour]; flow logs {flow_gb['floor']:.2f} / {flow_gb['ceiling']:.2f} GB "
        "[flow_log_gb_base, flow_log_bytes_per_request]")
    retention = min((days or 3653) for _, days in facts.log_groups) if facts.log_groups else 0
    kept = min(retention / 30.4, 12.0)  # steady state: months of logs held (first-year view)
    stored = {k: (log_gb[k] + flow_gb[k] + ci_gb[k]) * kept for k in requests}
    add("CloudWatch Logs (storage)", stored["floor"] * p.usd("logs.storage"),
        stored["ceiling"] * p.usd("logs.storage"),
        f"{kept:.1f} months held ({retention} days retention, first year at most); "
        "uncompressed size, so an upper bound")
    if facts.container_insights:
        ci_metrics = a["container_insights_metrics"] * p.usd("cw.metric")
        add("Container Insights", ci_metrics + ci_gb["floor"] * p.usd("logs.ingest"),
            ci_metrics + ci_gb["ceiling"] * p.usd("logs.ingest"),
            f"{a['container_insights_metrics']:g} metrics [container_insights_metrics] + "
            f"{ci_gb['floor']:.1f} / {ci_gb['ceiling']:.1f} GB performance logs")
    alarm = facts.alarm_metrics * p.usd("cw.alarm")
    add("CloudWatch alarms", alarm, alarm, f"{facts.alarms} alarms, {facts.alarm_metrics} metrics")
    dash = facts.dashboards * p.usd("cw.dashboard")
    add("CloudWatch dashboards", dash, dash, f"{facts.dashboards} dashboard(s)")
    emf = facts.custom_metrics * p.usd("cw.metric")
    add("Custom metrics (gateway EMF)", emf, emf,
        f"{facts.custom_metrics} metrics x 1 dimension set (app/contract.py)")
    if facts.alb_access_logs:
        # Stored volume: one month of logs per month of retention, capped at a year (first year).
        s3 = {k: requests[k] * a["access_log_bytes_per_request"] / GB for k in requests}
        puts = facts.alb_public_azs * H * a["access_log_put_per_alb_hour"] / 1000 * p.usd("s3.put")
        add("ALB access logs (S3)", s3["floor"] * 12 * p.usd("s3.standard") + puts,
            s3["ceiling"] * 12 * p.usd("s3.standard") + puts,
            f"{s3['ceiling']:.2f} GB/month at the ceiling, up to 12 months held "
            "[access_log_bytes_per_request, access_log_put_per_alb_hour]")
    ecr_gb = sum(min(kept_n or a["images_pushed"], a["images_pushed"])
                 * (a["image_gb_ollama"] if "ollama" in name else a["image_gb_gateway"])
                 for name, kept_n in facts.ecr_images_kept.items())
    add("ECR storage", ecr_gb * p.usd("ecr.storage"), ecr_gb * p.usd("ecr.storage"),
        f"{ecr_gb:.1f} GB: images kept per repository "
        f"{dict(sorted(facts.ecr_images_kept.items()))} x size [image_gb_*, images_pushed]; "
        "no layer sharing assumed (an upper bound)")
    if facts.dns_records:
        zone = a["hosted_zones"] * p.usd("route53.zone")
        q = {k: requests[k] * a["dns_queries_per_request"] / 1e6 * p.usd("route53.query")
             for k in requests}
        add("Route 53", zone + q["floor"], zone + q["ceiling"],
            f"{a['hosted_zones']:g} zone [hosted_zones], {facts.dns_records} record(s); alias "
            "queries to the ALB not billed [dns_queries_per_request]")
    add("Data transfer out", dto["floor"] * p.usd("dto.internet"),
        dto["ceiling"] * p.usd("dto.internet"),
        f"{dto['floor']:.1f} / {dto['ceiling']:.1f} GB responses [response_kb]")
    if facts.web_acls:
        fixed = facts.web_acls * p.usd("waf.acl") + facts.waf_rules * p.usd("waf.rule")
        add("WAF", fixed + requests["floor"] / 1e6 * p.usd("waf.request"),
            fixed + requests["ceiling"] / 1e6 * p.usd("waf.request"),
            f"{facts.web_acls} web ACL, {facts.waf_rules} rules, requests as above")

    # A rolling deploy of D tasks at maximum percent P runs up to ceil(D x P / 100) tasks.
    surge_for = lambda d: (facts.instances_for(math.ceil(d * facts.deploy_max_percent / 100))  # noqa: E731
                           - facts.instances_for(d))
    extra = {"floor": surge_for(max(ph.min_tasks for ph in facts.schedule)),
             "ceiling": surge_for(max(ph.max_tasks for ph in facts.schedule))}
    surge = (f"Deploy surge: a rolling deploy at {facts.deploy_max_percent}% adds up to "
             f"{extra['floor']} instance(s) at the floor / {extra['ceiling']} at the ceiling while "
             f"it runs: ${extra['floor'] * hourly:.2f} / ${extra['ceiling'] * hourly:.2f} per hour "
             "of deploy (not in the monthly figures).")
    spot_line = (f"Spot {facts.instance_type}: ${spot[0]}/h (highest AZ {spot[1]}, {spot[2]}): "
                 f"the GPU line would be ${inst['floor'] * H * spot[0]:.2f} at the floor and "
                 f"${inst['ceiling'] * H * spot[0]:.2f} at the ceiling (SpotInstances=true; "
                 "docs/infrastructure.md, Spot)."
                 if spot else f"Spot {facts.instance_type}: no Spot price in the price file "
                 f"(refresh: make cost-prices REGION={facts.region}).")
    return Estimate(env=facts.env, region=facts.region, lines=lines, surge=surge, assumed=dict(a),
                    unverified_prices=book.unverified(), spot=spot_line)
