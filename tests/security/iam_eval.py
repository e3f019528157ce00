"""Offline evaluation of identity policies with moto's IAMPolicy (moto 5.2.5), in one place.

moto.iam.access_control.IAMPolicy is moto's internal policy evaluator (it backs moto's own
access checks); this module is the only one that imports it, so a moto upgrade that changes it
breaks here and nowhere else. What it does and does not model (read before trusting a test):

- Allow/Deny, Action and Resource with `*` wildcards: evaluated. An explicit Deny wins.
- moto turns a pattern into a regular expression without escaping it (a "." in an ARN would
  match any character). allowed() matches exactly: every character is literal except `*`
  (any sequence) and `?` (one character), as IAM does.
- Condition: moto evaluates StringEquals only, and only for the keys the caller supplies in
  `context`; other operators and keys that are not supplied are treated as met. So a test
  that relies on a condition must pass the context key (kms:ViaService ...).
- NotAction, NotResource and NotPrincipal are refused (ValueError): moto would treat a
  NotResource statement as applying to every resource, and our policies never use them.
- Only identity policies attached to one principal (a role's inline policies); no resource
  policies, permission boundaries, SCPs or session policies.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator

from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult


def _exact_match(pattern: str, string: str) -> re.Match[str] | None:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.match(f"^{regex}$", string, re.DOTALL)


@contextlib.contextmanager
def _exact_patterns() -> Iterator[None]:
    original = IAMPolicyStatement.__dict__["_match"]
    IAMPolicyStatement._match = staticmethod(_exact_match)
    try:
        yield
    finally:
        IAMPolicyStatement._match = original


def _check_supported(document: dict) -> None:
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
            if unsupported in statement:
                raise ValueError(f"statement {statement.get('Sid', '?')}: {unsupported} is not "
                                 "supported by the evaluator (and not used by this project)")
        if isinstance(statement.get("Action"), str):
            statement["Action"] = [statement["Action"]]


def decision(documents: Iterable[dict], action: str, resource: str,
             context: dict[str, str] | None = None) -> str:
    """ "allowed", "denied" (explicit Deny) or "implicit-deny" for one request.

    documents: the principal's identity policy documents, rendered (plain strings, no Ref).
    """
    results = []
    with _exact_patterns():
        for document in documents:
            document = json.loads(json.dumps(document))
            _check_supported(document)
            policy = IAMPolicy(json.dumps(document))
            results.append(policy.is_action_permitted(
                action, resource, incoming_condition_values=context))
    if PermissionResult.DENIED in results:
        return "denied"
    if PermissionResult.PERMITTED in results:
        return "allowed"
    return "implicit-deny"


def allowed(documents: Iterable[dict], action: str, resource: str,
            context: dict[str, str] | None = None) -> bool:
    return decision(list(documents), action, resource, context) == "allowed"


def role_policies(template: dict, logical_id: str) -> list[dict]:
    """The inline policy documents of an AWS::IAM::Role in a rendered template."""
    resource = template["Resources"][logical_id]
    if resource["Type"] != "AWS::IAM::Role":
        raise ValueError(f"{logical_id} is a {resource['Type']}, not an AWS::IAM::Role")
    documents = [policy["PolicyDocument"] for policy in resource["Properties"].get("Policies", [])]
    for document in documents:
        text = json.dumps(document)
        if '"Ref"' in text or '"Fn::' in text:
            raise ValueError(f"{logical_id}: policy is not rendered (it still holds Ref/Fn::)")
    return documents
