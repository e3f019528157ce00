"""Parameter findings: what a change to root's (or the registry's) Parameters does to params files.

The deploy path runs `aws cloudformation deploy --parameter-overrides file://params/<env>.json`.
Its merge_parameters (awscli 1.46.2, awscli/customizations/cloudformation/deploy.py) walks the
template's Parameters only: a key the template does not declare is dropped without a word, and a
declared parameter that the file does not set is sent as UsePreviousValue=True. So:
- a new parameter without a Default that a params file does not set fails the update (there is no
  previous value to use);
- a removed or renamed parameter that a params file still sets is silently ignored;
- a changed Default does not reach a stack that already exists unless its params file sets it
  (the stack keeps its previous value); only new stacks get the new Default.
"""

from __future__ import annotations

from tools.review.findings import Finding

# Templates whose parameters the params files feed (nested stacks get theirs from root).
FACING_FILES = ("root.json", "registry.json")


def _word(definition: dict) -> str:
    return f"Default {definition['Default']!r}" if "Default" in definition else "no Default"


def parameter_findings(file_name: str, result: dict, params: dict[str, dict[str, str]]) -> list[Finding]:
    """params: environment -> values of its params file on the new side."""
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
                          f"{params_file} does NOT set it: the update fails (deploy sends "
                          "UsePreviousValue for a parameter the stack never had)")
                out.append(Finding(env, layer, "parameter",
                                   f"new parameter {name} without a Default: {status}"))
            elif new is None:
                hint = f" (renamed to {', '.join(added)}?)" if added else ""
                status = (f"{params_file} still sets it and deploy silently ignores that value"
                          if name in values else f"{params_file} does not set it")
                out.append(Finding(env, layer, "parameter",
                                   f"parameter {name} removed{hint}: {status}"))
            else:
                if old.get("Default") != new.get("Default"):
                    effect = (f"no effect here, {params_file} sets {name}" if name in values else
                              "the existing stack keeps its previous value (deploy sends "
                              "UsePreviousValue); only a new stack gets the new Default")
                    out.append(Finding(env, layer, "parameter",
                                       f"parameter {name} {_word(old)} -> {_word(new)}: {effect}"))
                allowed = new.get("AllowedValues")
                if allowed and name in values and values[name] not in [str(a) for a in allowed]:
                    out.append(Finding(env, layer, "parameter",
                                       f"parameter {name}: {params_file} sets {values[name]!r}, "
                                       f"not among its new AllowedValues {allowed}"))
    return out
