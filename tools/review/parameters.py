"""Parameter findings: what a change to root's (or the registry's) Parameters does to params files.

A params file holds overrides: the deploy sends every root parameter, its Default unless the
environment's file sets it (tools/params.py effective values; the manual path's file is
`python -m tools.params ENV`). So:
- a new parameter without a Default that a params file does not set stops that environment's
  deploy (there is no value to send);
- a removed or renamed parameter that a params file still sets makes every tool refuse that file
  (a key the template does not declare is an error, not a silent drop);
- a changed Default reaches every environment whose params file does not set the parameter, at
  its next deploy; a file that sets it keeps its own value.
"""

from __future__ import annotations

from tools.review.findings import Finding

# Templates whose parameters the params files feed (nested stacks get theirs from root).
FACING_FILES = ("root.json", "registry.json")


def _word(definition: dict) -> str:
    return f"Default {definition['Default']!r}" if "Default" in definition else "no Default"


def parameter_findings(file_name: str, result: dict, params: dict[str, dict[str, str]]) -> list[Finding]:
    """params: environment -> what its params file sets on the new side (not the defaults)."""
    layer = file_name.removesuffix(".json")
    changes = result["parameters"]
    added = [c["name"] for c in changes if c["old"] is None]
    out = []
    for env, values in sorted(params.items()):
        params_file = f"params/{env}.json"
        for change in changes:
            name, old, new = change["name"], change["old"], change["new"]
            if old is None:
                if "Default" in new:
                    continue
                status = (f"{params_file} sets it" if name in values else
                          f"{params_file} does NOT set it: the deploy stops before any change "
                          "(there is no value to send)")
                out.append(Finding(env, layer, "parameter",
                                   f"new parameter {name} without a Default: {status}"))
            elif new is None:
                hint = f" (renamed to {', '.join(added)}?)" if added else ""
                status = (f"{params_file} still sets it: every tool refuses that file until "
                          "the line goes" if name in values else f"{params_file} does not set it")
                out.append(Finding(env, layer, "parameter",
                                   f"parameter {name} removed{hint}: {status}"))
            else:
                if old.get("Default") != new.get("Default"):
                    effect = (f"no effect here, {params_file} sets {name}" if name in values else
                              f"{params_file} does not set it: the next deploy of {env} "
                              "sends the new Default")
                    out.append(Finding(env, layer, "parameter",
                                       f"parameter {name} {_word(old)} -> {_word(new)}: {effect}"))
                allowed = new.get("AllowedValues")
                if allowed and name in values and values[name] not in [str(a) for a in allowed]:
                    out.append(Finding(env, layer, "parameter",
                                       f"parameter {name}: {params_file} sets {values[name]!r}, "
                                       f"not among its new AllowedValues {allowed}"))
    return out
