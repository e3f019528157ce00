"""params/<env>.json: a JSON list of "Key=Value" strings, one per line.

That is the one form `aws cloudformation deploy --parameter-overrides file://params/<env>.json`
accepts in AWS CLI v1 and v2. This module reads and checks it; scripts that need another form
(change sets) convert it with as_cloudformation().
"""

from __future__ import annotations

import json
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


def render(values: dict[str, str]) -> str:
    """The params-file text for values (same form as the committed files)."""
    lines = ",\n".join(f"  {json.dumps(f'{key}={value}')}" for key, value in values.items())
    return "[\n" + lines + "\n]\n"


def as_cloudformation(values: dict[str, str]) -> list[dict[str, str]]:
    """The ParameterKey/ParameterValue list that CreateChangeSet takes."""
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]
