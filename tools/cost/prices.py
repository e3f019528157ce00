"""The committed price files: prices/<region>.json, one per region, each price with its source.

A price entry: {"usd", "unit", "what", "query", "verified", "source"}. "query" is the AWS Price
List Query API call (GetProducts: service code, TERM_MATCH filters, the unit of the price
dimension) that `make cost-prices` runs to refresh it; "verified" says how sure the figure is
("price-list-api", "public page", "secondary", "not verified"); "source" names the page and the
date it was read. The "spot" section holds DescribeSpotPriceHistory results per instance type and
AZ with their timestamps (never from the Price List: Spot prices are not in it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRICES_DIR = REPO / "prices"
VERIFIED_LEVELS = ("price-list-api", "public page", "secondary", "not verified")
REQUIRED_FIELDS = ("usd", "unit", "what", "query", "verified", "source")


class PriceError(ValueError):
    """A price is missing or a price file is malformed: one line naming what and the fix."""


def refresh_command(region: str) -> str:
    return f"make cost-prices REGION={region}"


@dataclass
class PriceBook:
    region: str
    prices: dict[str, dict]
    spot: dict = field(default_factory=dict)
    path: Path | None = None
    used: set[str] = field(default_factory=set)

    def usd(self, key: str) -> float:
        """The price for key; a missing key is one line naming it and the refresh command."""
        entry = self.prices.get(key)
        if entry is None:
            raise PriceError(
                f"no price '{key}' in {self._where()} for region {self.region}; add it or refresh "
                f"the file: {refresh_command(self.region)} (needs AWS credentials)")
        self.used.add(key)
        return float(entry["usd"])

    def instance_hour(self, instance_type: str) -> float:
        key = f"ec2.{instance_type}"
        if key not in self.prices:
            raise PriceError(
                f"no On-Demand price for instance type {instance_type} in {self._where()} "
                f"(region {self.region}); refresh it: {refresh_command(self.region)} "
                f"INSTANCE_TYPES={instance_type} (needs AWS credentials)")
        return self.usd(key)

    def spot_price(self, instance_type: str) -> tuple[float, str, str] | None:
        """(highest current price over the AZs, AZ, timestamp) or None when never fetched."""
        per_az = (self.spot.get("prices") or {}).get(instance_type) or {}
        if not per_az:
            return None
        az, entry = max(per_az.items(), key=lambda item: float(item[1]["usd"]))
        return float(entry["usd"]), az, str(entry["timestamp"])

    def unverified(self, keys: set[str] | None = None) -> list[str]:
        keys = self.used if keys is None else keys
        return sorted(k for k in keys if self.prices.get(k, {}).get("verified") == "not verified")

    def _where(self) -> str:
        return str(self.path.relative_to(REPO)) if self.path and self.path.is_relative_to(REPO) \
            else str(self.path or "the price file")


def validate(doc: object, origin: str) -> None:
    """Every entry has its fields, a number, a known 'verified' level and a query to refresh it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), dict):
        raise PriceError(f"{origin}: must be a JSON object with a 'prices' object")
    for key, entry in doc["prices"].items():
        missing = [name for name in REQUIRED_FIELDS if name not in entry]
        if missing:
            raise PriceError(f"{origin}: price '{key}' lacks {missing}")
        if not isinstance(entry["usd"], (int, float)) or entry["usd"] < 0:
            raise PriceError(f"{origin}: price '{key}' usd must be a number >= 0")
        if entry["verified"] not in VERIFIED_LEVELS:
            raise PriceError(f"{origin}: price '{key}' verified={entry['verified']!r}; "
                             f"allowed: {', '.join(VERIFIED_LEVELS)}")
        query = entry["query"]
        if not query.get("service_code") or not query.get("price_unit"):
            raise PriceError(f"{origin}: price '{key}' query needs service_code and price_unit")
        source = entry["source"]
        if entry["verified"] != "price-list-api" and not (source.get("page") and source.get("entered")):
            raise PriceError(f"{origin}: price '{key}' source needs the page and the date entered")


def load(region: str, prices_dir: Path = PRICES_DIR) -> PriceBook:
    path = prices_dir / f"{region}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in prices_dir.glob("*.json"))) or "none"
        raise PriceError(f"no price file for region {region} ({path.name}; have: {known}); "
                         f"create it: {refresh_command(region)} (needs AWS credentials)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PriceError(f"{path}: not valid JSON ({error})") from None
    validate(doc, str(path))
    if doc.get("region") != region:
        raise PriceError(f"{path}: says region {doc.get('region')!r}, expected {region!r}")
    return PriceBook(region=region, prices=doc["prices"], spot=doc.get("spot") or {}, path=path)
