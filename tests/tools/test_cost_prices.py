"""Price files, their sources, the missing-price messages, the cron weighting, and the refresh
against botocore Stubber responses (stand-ins for the Price List and EC2 APIs: no AWS here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from tools.cost import prices as prices_mod
from tools.cost import refresh, schedule


def test_every_committed_price_has_a_query_and_a_source():
    files = sorted(prices_mod.PRICES_DIR.glob("*.json"))
    assert files, "no price file"
    for path in files:
        doc = json.loads(path.read_text())
        prices_mod.validate(doc, str(path))
        for key, entry in doc["prices"].items():
            filters = entry["query"]["filters"]
            assert filters.get("regionCode", filters.get("fromRegionCode", doc["region"])) \
                == doc["region"] or key.startswith("route53."), key
            if entry["verified"] in ("secondary", "public page"):
                assert entry["source"].get("seen_in") and entry["source"].get("quote"), key


@pytest.mark.parametrize(("call", "message"), [
    (lambda: prices_mod.load("eu-west-1"),
     "no price file for region eu-west-1 (eu-west-1.json; have: us-east-1); create it: "
     "make cost-prices REGION=eu-west-1"),
    (lambda: prices_mod.load("us-east-1").instance_hour("g6e.xlarge"),
     "no On-Demand price for instance type g6e.xlarge in prices/us-east-1.json (region "
     "us-east-1); refresh it: make cost-prices REGION=us-east-1 INSTANCE_TYPES=g6e.xlarge"),
    (lambda: prices_mod.load("us-east-1").usd("ebs.io2"),
     "no price 'ebs.io2' in prices/us-east-1.json for region us-east-1; add it or refresh"),
])
def test_missing_prices_are_one_line_with_the_refresh_command(call, message):
    with pytest.raises(prices_mod.PriceError) as error:
        call()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize(("entry", "message"), [
    ({"usd": 1}, "lacks"),
    ({"usd": -1, "unit": "h", "what": "x", "query": {"service_code": "A", "price_unit": "Hrs"},
      "verified": "secondary", "source": {"page": "p", "entered": "d"}}, "usd must be a number"),
    ({"usd": 1, "unit": "h", "what": "x", "query": {"service_code": "A", "price_unit": "Hrs"},
      "verified": "trust me", "source": {"page": "p", "entered": "d"}}, "verified='trust me'"),
    ({"usd": 1, "unit": "h", "what": "x", "query": {"service_code": "A", "price_unit": "Hrs"},
      "verified": "secondary", "source": {"page": "p"}}, "the page and the date entered"),
])
def test_a_price_without_its_source_is_refused(entry, message):
    with pytest.raises(prices_mod.PriceError, match=message):
        prices_mod.validate({"prices": {"k": entry}}, "f")


# --- cron weighting ------------------------------------------------------------------------------

def _action(cron, low, high):
    return {"Schedule": cron, "ScalableTargetAction": {"MinCapacity": low, "MaxCapacity": high}}


def test_weekday_working_hours_share():
    result = schedule.phases(1, 1, [_action("cron(0 20 ? * MON-FRI *)", 0, 0),
                                    _action("cron(0 7 ? * MON-FRI *)", 1, 1)])
    # 2027: 261 weekdays x 13 h on, the rest (nights and weekends) off.
    assert {(p.min_tasks, p.max_tasks): p.share for p in result} == pytest.approx(
        {(1, 1): 261 * 13 / 8760, (0, 0): 1 - 261 * 13 / 8760})


def test_no_schedule_is_all_hours():
    assert schedule.phases(2, 4, []) == [schedule.Phase(2, 4, 1.0)]


@pytest.mark.parametrize(("cron", "message"), [
    ("rate(5 minutes)", "cron\\(\\) schedules only"),
    ("at(2027-01-01T00:00:00)", "cron\\(\\) schedules only"),
    ("cron(0 7 * *)", "needs 6 fields"),
    ("cron(0 25 ? * * *)", "hours '25' is outside 0-23"),
    ("cron(0 7 ? * 6#3 *)", "L, W and # are not supported"),
])
def test_unweighable_schedules_are_refused(cron, message):
    with pytest.raises(schedule.ScheduleError, match=message):
        schedule.phases(1, 1, [_action(cron, 0, 0)])


# --- make cost-prices, against Stubber responses ------------------------------------------------

def _item(sku, unit, usd, begin="0"):
    return json.dumps({"product": {"sku": sku}, "terms": {"OnDemand": {f"{sku}.T": {
        "priceDimensions": {f"{sku}.T.D": {"unit": unit, "beginRange": begin,
                                           "pricePerUnit": {"USD": str(usd)}}}}}}})


DOC = {"region": "us-east-1", "spot": {"prices": {}, "fetched": None}, "prices": {
    "ec2.g5.xlarge": {"usd": 1.0, "unit": "instance-hour", "what": "x", "verified": "secondary",
                      "source": {"page": "p", "entered": "d"},
                      "query": {"service_code": "AmazonEC2", "price_unit": "Hrs",
                                "filters": {"regionCode": "us-east-1", "instanceType": "g5.xlarge"}}},
    "nat.gb": {"usd": 0.04, "unit": "GB", "what": "x", "verified": "secondary",
               "source": {"page": "p", "entered": "d"},
               "query": {"service_code": "AmazonEC2", "price_unit": "GB",
                         "filters": {"regionCode": "us-east-1", "productFamily": "NAT Gateway"}}},
}}
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_refresh_replaces_prices_and_fills_spot():
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    with Stubber(pricing) as p_stub, Stubber(ec2) as e_stub:
        # sorted keys: ec2.g5.xlarge first (paginated), then nat.gb (ambiguous: two prices)
        p_stub.add_response("get_products", {"PriceList": [_item("A", "Hrs", 1.006)],
                                             "NextToken": "n"},
                            {"ServiceCode": "AmazonEC2", "MaxResults": 100, "Filters": [
                                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"},
                                {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "g5.xlarge"}]})
        p_stub.add_response("get_products", {"PriceList": [_item("A", "Hrs", 1.006),
                                                           _item("A", "Hrs", 0.5, begin="100")]})
        p_stub.add_response("get_products", {"PriceList": [_item("B", "GB", 0.045),
                                                           _item("C", "GB", 0.05),
                                                           _item("D", "Hrs", 0.045)]})
        e_stub.add_response("describe_spot_price_history", {"SpotPriceHistory": [
            {"InstanceType": "g5.xlarge", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.41",
             "Timestamp": datetime(2026, 11, 29, 11, 0, tzinfo=UTC), "ProductDescription": "Linux/UNIX"},
        ]}, {"InstanceTypes": ["g5.xlarge"], "StartTime": NOW, "ProductDescriptions": ["Linux/UNIX"]})
        new, problems = refresh.refresh(DOC, pricing, ec2, [], NOW, "us-east-1")
        p_stub.assert_no_pending_responses()
        e_stub.assert_no_pending_responses()
    g5 = new["prices"]["ec2.g5.xlarge"]
    assert (g5["usd"], g5["verified"], g5["source"]["sku"]) == (1.006, "price-list-api", "A")
    assert new["prices"]["nat.gb"]["usd"] == 0.04  # ambiguous: kept, and reported
    assert problems == ["nat.gb: kept 0.04 (AmazonEC2 {'regionCode': 'us-east-1', 'productFamily': "
                        "'NAT Gateway'} unit GB: 2 different prices [0.045, 0.05])"]
    assert new["spot"]["prices"]["g5.xlarge"]["us-east-1a"] == {
        "usd": 0.41, "timestamp": "2026-11-29T11:00:00+00:00"}
    assert new["spot"]["fetched"] == NOW.isoformat()
    assert DOC["prices"]["ec2.g5.xlarge"]["usd"] == 1.0  # the input is not modified
