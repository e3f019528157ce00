"""params/<env>.json: a JSON list of "Key=Value" strings, one per line; params/<env>.toml beside it.

That is the one form `aws cloudformation deploy --parameter-overrides file://params/<env>.json`
accepts in AWS CLI v1 and v2. This module reads and checks it; scripts that need another form
(change sets) convert it with as_cloudformation().

An environment is its params file: copying params/prod.json to params/staging.json makes a
staging environment that every tool lists. What the deploy tool must know about an environment
and CloudFormation must not (today: whether it counts as production) lives in the optional
companion params/<env>.toml, never in the params file: `aws cloudformation deploy` silently drops
keys that are not template parameters, and a change set refuses them.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO / "params"


class ParamsError(ValueError):
    """A params file is malformed: the message names the file and the entry."""


def parse(text: str, origin: str) -> dict[str, str]:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ParamsError(f"{origin}: not valid JSON ({error})") from None
    if not isinstance(entries, list):
        raise ParamsError(f'{origin}: must be a JSON list of "Key=Value" strings')
    values: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or "=" not in entry or entry.startswith("="):
            raise ParamsError(f'{origin}: entry {index} ({entry!r}) is not a "Key=Value" string')
        key, value = entry.split("=", 1)
        if key in values:
            raise ParamsError(f"{origin}: {key} is set twice (entries must be unique)")
        values[key] = value
    return values


def load(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    return parse(text, str(path))


def environments() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.json"))


def load_env(env: str) -> dict[str, str]:
    path = PARAMS_DIR / f"{env}.json"
    if not path.is_file():
        known = ", ".join(environments()) or "none"
        raise ParamsError(f"no params file for environment {env!r} ({path}); known: {known}")
    return load(path)


@dataclass(frozen=True)
class Environment:
    """params/<env>.toml: how the deploy tool treats an environment (defaults without the file)."""

    name: str
    # Production stacks get stack termination protection; teardown then asks for the stack name
    # and turns protection off deliberately.
    production: bool = False


def environment(env: str, params_dir: Path | None = None) -> Environment:
    """The environment's companion settings; an unknown key or a wrong type names the file."""
    params_dir = params_dir or PARAMS_DIR
    path = params_dir / f"{env}.toml"
    if not path.is_file():
        return Environment(env)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ParamsError(f"{path}: not valid TOML ({error})") from None
    allowed = {f.name: f.type for f in fields(Environment) if f.name != "name"}
    for key, value in data.items():
        if key not in allowed:
            raise ParamsError(f"{path}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        if not isinstance(value, bool):
            raise ParamsError(f"{path}: {key} must be true or false, not {value!r}")
    return Environment(env, **data)


def render(values: dict[str, str]) -> str:
    """The params-file text for values (same form as the committed files)."""
    lines = ",\n".join(f"  {json.dumps(f'{key}={value}')}" for key, value in values.items())
    return "[\n" + lines + "\n]\n"


def as_cloudformation(values: dict[str, str]) -> list[dict[str, str]]:
    """The ParameterKey/ParameterValue list that CreateChangeSet takes."""
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]
