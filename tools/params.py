"""params/<env>.json: the values an environment sets differently from the declared defaults.

A parameter's default lives in its declaration (the layer's Param, written into the root
template's Parameters as Default); params/<env>.json names only what differs, as a JSON list of
"Key=Value" strings, one per line. load_env() gives an environment's effective values: every
Default of templates/root.json, then the file's values over them. That is what every reader
sees (the deploy, preflight, the renderer, the gate, cost, review, the docs), and what the deploy
sends: every parameter with its value, so a changed Default reaches each environment that does
not set it. (`aws cloudformation deploy --parameter-overrides` would send a parameter that the
file leaves out as UsePreviousValue: the manual path takes the file main() prints.)

An environment is its params file: copying params/prod.json to params/staging.json makes a
staging environment that every tool lists. What the deploy tool must know about an environment
and CloudFormation must not (today: whether it counts as production) lives in the optional
companion params/<env>.toml, never in the params file: `aws cloudformation deploy` silently drops
keys that are not template parameters, and a change set refuses them.

    python -m tools.params ENV [KEY=VALUE ...]   print ENV's effective values (plus KEY=VALUE)
                                                 in the params-file form, for the manual path

Standard library only, so the manual path runs with any python3.11.
"""

from __future__ import annotations

import difflib
import json
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO / "params"
ROOT_TEMPLATE = REPO / "templates" / "root.json"


class ParamsError(ValueError):
    """A params file is malformed: the message names the file and the entry."""


def parse(text: str, origin: str) -> dict[str, str]:
    """The values a params file's text sets (only those: see effective())."""
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


def load_overrides(env: str) -> dict[str, str]:
    """What params/<env>.json itself sets (the overrides of the declared defaults)."""
    path = PARAMS_DIR / f"{env}.json"
    if not path.is_file():
        known = ", ".join(environments()) or "none"
        raise ParamsError(f"no params file for environment {env!r} ({path}); known: {known}")
    return load(path)


def declared(root_template: Path = ROOT_TEMPLATE) -> dict[str, dict]:
    """The root template's Parameters: name -> its definition (Type, Default, bounds...)."""
    try:
        return json.loads(root_template.read_text()).get("Parameters", {})
    except FileNotFoundError:
        raise ParamsError(f"{root_template}: not found; run `make generate`") from None


def defaults(parameters: dict[str, dict]) -> dict[str, str]:
    """Each declared Default as CloudFormation takes it: a string (a Number's 365 is "365")."""
    return {name: str(spec["Default"]) for name, spec in parameters.items() if "Default" in spec}


def effective(overrides: dict[str, str], parameters: dict[str, dict],
              origin: str) -> dict[str, str]:
    """The declared defaults, then overrides over them. A key the template does not declare is
    refused (a misspelt override would otherwise leave the default in place without a word)."""
    for key in overrides:
        if key not in parameters:
            close = difflib.get_close_matches(key, list(parameters), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ParamsError(f"{origin}: {key} is not a parameter of the root template{hint} "
                              "(remove it, or declare the parameter in its layer)")
    merged = {**defaults(parameters), **overrides}
    return {name: merged[name] for name in parameters if name in merged}  # the template's order


def load_env(env: str, root_template: Path = ROOT_TEMPLATE) -> dict[str, str]:
    """The values environment env deploys with: root_template's defaults, then its params file."""
    return effective(load_overrides(env), declared(root_template), f"params/{env}.json")


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


def with_defaults(env: str, values: dict[str, str] | None = None) -> dict[str, str]:
    """values (default: the environment's effective values) over the root template's defaults."""
    return {**defaults(declared()), **(values if values is not None else load_env(env))}


def whole_number(env: str, values: dict[str, str], key: str) -> int:
    """values[key] as an int; a missing or non-numeric value names the params file and key."""
    try:
        return int(values[key])
    except KeyError:
        raise ParamsError(f"params/{env}.json: {key} is not set and has no default") from None
    except ValueError:
        raise ParamsError(f"params/{env}.json: {key}={values[key]!r} is not a whole number") from None


def render(values: dict[str, str]) -> str:
    """The params-file text for values (same form as the committed files)."""
    lines = ",\n".join(f"  {json.dumps(f'{key}={value}')}" for key, value in values.items())
    return "[\n" + lines + "\n]\n"


def as_cloudformation(values: dict[str, str]) -> list[dict[str, str]]:
    """The ParameterKey/ParameterValue list that CreateChangeSet takes."""
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]


def main(argv: list[str] | None = None) -> int:
    """Print an environment's effective values as a params file, for the manual path.

    `aws cloudformation deploy --parameter-overrides file://...` sends a declared parameter that
    the file leaves out as UsePreviousValue (awscli 1.46.2, awscli/customizations/
    cloudformation/deploy.py, merge_parameters): with params/<env>.json alone, a stack that
    exists keeps its old value where the Default changed. This file names every parameter.
    """
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m tools.params ENV [KEY=VALUE ...]  (ENV: "
              f"{', '.join(environments())})", file=sys.stderr)
        return 2
    try:
        values = load_env(args[0])
        extra = parse(json.dumps(args[1:]), "the KEY=VALUE arguments")
        values = effective({**values, **extra}, declared(), "the KEY=VALUE arguments")
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(render(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
