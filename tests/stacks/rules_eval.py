"""Offline evaluation of a template's parameter constraints and Rules (moto ignores both).

CloudFormation checks every parameter against its Type, AllowedValues, AllowedPattern and
bounds, then evaluates the template's Rules: a rule whose RuleCondition holds fails the
operation with its AssertDescription when an Assert is false
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html).
The functions here are the rule functions this project uses; anything else is refused, so a
new function cannot pass unevaluated.
"""

from __future__ import annotations

import re


class UnsupportedFunction(ValueError):
    pass


def evaluate(node, values: dict[str, str]):
    """The value of a rule expression for the given parameter values (all strings)."""
    if isinstance(node, (str, int, float, bool)):
        return node
    if isinstance(node, list):
        return [evaluate(item, values) for item in node]
    if not isinstance(node, dict) or len(node) != 1:
        raise UnsupportedFunction(f"not a rule expression: {node!r}")
    (function, argument), = node.items()
    if function == "Ref":
        return values[argument]
    if function == "Fn::Equals":
        left, right = (evaluate(a, values) for a in argument)
        return str(left) == str(right)
    if function == "Fn::Not":
        (inner,) = argument
        return not evaluate(inner, values)
    if function == "Fn::And":
        return all(evaluate(a, values) for a in argument)
    if function == "Fn::Or":
        return any(evaluate(a, values) for a in argument)
    if function == "Fn::Contains":
        haystack, needle = (evaluate(a, values) for a in argument)
        return needle in haystack
    raise UnsupportedFunction(f"{function} is not evaluated here; add it to tests/stacks/rules_eval.py")


def parameter_errors(template: dict, values: dict[str, str]) -> list[str]:
    """What CloudFormation refuses before Rules: a missing value or a broken constraint."""
    errors = []
    for name, spec in template.get("Parameters", {}).items():
        if name not in values and "Default" not in spec:
            errors.append(f"{name}: no value and no default")
            continue
        value = str(values.get(name, spec.get("Default")))
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            errors.append(f"{name}={value!r}: not one of {spec['AllowedValues']}")
        # AllowedPattern must match the whole value (java.util.regex, anchored).
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            errors.append(f"{name}={value!r}: does not match {spec['AllowedPattern']}")
        if spec.get("Type") == "Number":
            number = float(value)
            if "MinValue" in spec and number < float(spec["MinValue"]):
                errors.append(f"{name}={value}: below {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                errors.append(f"{name}={value}: above {spec['MaxValue']}")
    return errors


def rule_failures(template: dict, values: dict[str, str]) -> list[str]:
    """Names and descriptions of the Rules that would fail (after parameter defaults apply)."""
    merged = {name: str(spec["Default"]) for name, spec in template.get("Parameters", {}).items()
              if "Default" in spec} | values
    failures = []
    for name, rule in sorted(template.get("Rules", {}).items()):
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], merged):
            continue
        for assertion in rule["Assertions"]:
            if not evaluate(assertion["Assert"], merged):
                failures.append(f"{name}: {assertion.get('AssertDescription', '')}")
    return failures


def refusals(template: dict, values: dict[str, str]) -> list[str]:
    """Everything CloudFormation would refuse before creating a resource."""
    errors = parameter_errors(template, values)
    return errors or rule_failures(template, values)
