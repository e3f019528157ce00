"""Generation-time choices: the few things that change the templates' shape, not their values.

Everything that varies per environment is a CloudFormation Parameter instead (params/*.json).
The file is generation.toml at the repository root; bad values fail with one line that names
the field and what is allowed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

ALLOWED_AZ_COUNTS = (2, 3)


class SettingsError(ValueError):
    """A generation setting is missing, unknown or out of range."""


@dataclass(frozen=True)
class GenerationSettings:
    # How many AZs the network spans (subnets, NAT gateways, route tables are per AZ).
    az_count: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.az_count, bool) or self.az_count not in ALLOWED_AZ_COUNTS:
            allowed = ", ".join(str(n) for n in ALLOWED_AZ_COUNTS)
            raise SettingsError(f"az_count = {self.az_count!r} is not allowed; allowed values: {allowed}")

    @classmethod
    def from_mapping(cls, values: dict, origin: str = "settings") -> GenerationSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(
                f"{origin}: unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except SettingsError as error:
            raise SettingsError(f"{origin}: {error}") from None

    @classmethod
    def from_file(cls, path: Path) -> GenerationSettings:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"{path}: file not found; create it or pass --settings") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"{path}: not valid TOML: {error}") from None
        return cls.from_mapping(data.get("generation", {}), origin=str(path))
