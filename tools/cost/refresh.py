"""make cost-prices REGION=<region> [INSTANCE_TYPES=a,b]: refresh prices/<region>.json from AWS.

- Every entry's "query" runs as AWS Price List Query API GetProducts (the pricing endpoint is
  served from us-east-1 and ap-south-1; products are filtered by regionCode), and the On-Demand
  price dimension whose unit is the entry's price_unit (first tier) replaces the figure, with
  "verified": "price-list-api", the SKU and the time fetched. An entry whose query returns no
  such dimension, or several different prices, keeps its old figure and is reported.
  https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html
- Spot prices are not in the Price List: DescribeSpotPriceHistory (Linux/UNIX, StartTime=now
  returns the current price per AZ) fills the "spot" section with each AZ's price and timestamp.
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html
Needs AWS credentials (pricing:GetProducts, ec2:DescribeSpotPriceHistory); nothing else is called.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from datetime import UTC, datetime

from tools.cost import prices as prices_mod

PRICING_ENDPOINT_REGIONS = ("us-east-1", "ap-south-1")


def _dimensions(price_item: str):
    """(sku, unit, usd) for each first-tier On-Demand price dimension of one PriceList item."""
    product = json.loads(price_item)
    sku = product.get("product", {}).get("sku", "?")
    for term in (product.get("terms", {}).get("OnDemand") or {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if str(dim.get("beginRange", "0")) != "0":
                continue
            yield sku, dim.get("unit", ""), float(dim.get("pricePerUnit", {}).get("USD", "nan"))


def query_price(pricing, query: dict) -> tuple[float, str]:
    """The one price the query names; ValueError naming the query when it is not exactly one."""
    filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in query["filters"].items()]
    found: dict[float, str] = {}
    token = None
    while True:
        kwargs = {"ServiceCode": query["service_code"], "Filters": filters, "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = pricing.get_products(**kwargs)
        for item in page.get("PriceList", []):
            for sku, unit, usd in _dimensions(item):
                if unit == query["price_unit"] and usd > 0:
                    found.setdefault(usd, sku)
        token = page.get("NextToken")
        if not token:
            break
    if len(found) != 1:
        raise ValueError(f"{query['service_code']} {query['filters']} unit {query['price_unit']}: "
                         f"{'no price' if not found else f'{len(found)} different prices {sorted(found)}'}")
    (usd, sku), = found.items()
    return usd, sku


def spot_prices(ec2, instance_types: list[str], now: datetime) -> dict[str, dict[str, dict]]:
    history = ec2.describe_spot_price_history(InstanceTypes=instance_types, StartTime=now,
                                              ProductDescriptions=["Linux/UNIX"])
    latest: dict[str, dict[str, dict]] = {}
    for entry in history.get("SpotPriceHistory", []):
        per_az = latest.setdefault(entry["InstanceType"], {})
        stamp = entry["Timestamp"]
        stamp = stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)
        current = per_az.get(entry["AvailabilityZone"])
        if current is None or stamp > current["timestamp"]:
            per_az[entry["AvailabilityZone"]] = {"usd": float(entry["SpotPrice"]), "timestamp": stamp}
    return latest


def refresh(doc: dict, pricing, ec2, instance_types: list[str], now: datetime,
            endpoint: str) -> tuple[dict, list[str]]:
    """A refreshed copy of a price-file document and the problems met (one line each)."""
    new, problems = copy.deepcopy(doc), []
    region = new["region"]
    template = next((e["query"] for k, e in new["prices"].items() if k.startswith("ec2.")), None)
    for itype in instance_types:
        key = f"ec2.{itype}"
        if key not in new["prices"] and template:
            query = copy.deepcopy(template)
            query["filters"]["instanceType"] = itype
            new["prices"][key] = {"usd": 0.0, "unit": "instance-hour", "query": query,
                                  "what": f"{itype} Linux On-Demand, shared tenancy",
                                  "verified": "not verified", "source": {}}
    for key, entry in sorted(new["prices"].items()):
        try:
            usd, sku = query_price(pricing, entry["query"])
        except ValueError as error:
            problems.append(f"{key}: kept {entry['usd']} ({error})")
            continue
        entry.update(usd=usd, verified="price-list-api",
                     source={"fetched": now.isoformat(), "sku": sku,
                             "api": f"pricing.{endpoint} GetProducts"})
    types = sorted({k[4:] for k in new["prices"] if k.startswith("ec2.")})
    new["spot"]["prices"] = spot_prices(ec2, types, now)
    new["spot"]["fetched"] = now.isoformat()
    missing = [t for t in types if t not in new["spot"]["prices"]]
    if missing:
        problems.append(f"no Spot price for {', '.join(missing)} in {region}")
    prices_mod.validate(new, f"refreshed {region}")
    return new, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cost.refresh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("region")
    parser.add_argument("--instance-types", default="", help="comma-separated types to add")
    parser.add_argument("--endpoint", default="us-east-1", choices=PRICING_ENDPOINT_REGIONS)
    args = parser.parse_args(argv)
    import boto3  # only here: the estimate itself never needs AWS

    path = prices_mod.PRICES_DIR / f"{args.region}.json"
    base = prices_mod.PRICES_DIR / "us-east-1.json"
    doc = json.loads((path if path.is_file() else base).read_text())
    if not path.is_file():  # a new region: the us-east-1 queries with this regionCode
        doc["region"] = args.region
        for entry in doc["prices"].values():
            for name in ("regionCode", "fromRegionCode"):
                if name in entry["query"]["filters"]:
                    entry["query"]["filters"][name] = args.region
    session = boto3.session.Session()
    new, problems = refresh(doc, session.client("pricing", region_name=args.endpoint),
                            session.client("ec2", region_name=args.region),
                            [t for t in args.instance_types.split(",") if t],
                            datetime.now(UTC), args.endpoint)
    if not path.is_file():  # never keep a us-east-1 figure under another region's name
        dropped = sorted(k for k, e in new["prices"].items() if e["verified"] != "price-list-api")
        for key in dropped:
            del new["prices"][key]
        problems += [f"{key}: no price in {args.region}; left out" for key in dropped]
    path.write_text(json.dumps(new, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
