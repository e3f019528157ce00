"""Every IAM policy document in every template follows the project's IAM rules.

Documents are found wherever a resource property holds {"Statement": [...]} with Effect
entries (roles, managed policies, key policies, bucket and topic policies, endpoint policies,
both branches of an Fn::If), in the committed templates, so nothing escapes by being new.

- Allow statements: no wildcard in an action (no "*", no "service:*", no "service:Get*"),
  except the statements listed in security/iam-allowlist.yaml (the KMS key policy's
  delegation to the account); no NotAction/NotResource/NotPrincipal anywhere.
- Resource "*" in an Allow statement only when every action is listed in the allowlist (AWS
  offers no resource-level permission for it); a KMS key policy's "*" means the key itself.
- Allow statements of resource policies never name the public ("*") as principal.
- Trust policies name exactly one service principal and sts:AssumeRole only; they require
  aws:SourceAccount for services that send it (ECS tasks, flow logs) and do not for EC2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import pytest

from tests.cfn import TEMPLATES_DIR
from tools import security_gate


@dataclass(frozen=True)
class Document:
    template: str
    resource: str
    type: str
    path: str  # property path, e.g. Policies/0/PolicyDocument
    body: dict

    @property
    def kind(self) -> str:
        if self.path == "AssumeRolePolicyDocument":
            return "trust"
        if self.type == "AWS::KMS::Key" and self.path == "KeyPolicy":
            return "key"
        statements = self.statements
        return "resource" if any("Principal" in s for s in statements) else "identity"

    @property
    def statements(self) -> list[dict]:
        statements = self.body.get("Statement", [])
        return statements if isinstance(statements, list) else [statements]

    def where(self, statement: dict | None = None) -> str:
        sid = f" statement {statement.get('Sid', '(no Sid)')}" if statement is not None else ""
        return f"{self.template} {self.resource} ({self.type}) {self.path}{sid}"


def _is_policy(node) -> bool:
    if not isinstance(node, dict) or "Statement" not in node:
        return False
    statements = node["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    return bool(statements) and all(isinstance(s, dict) and "Effect" in s for s in statements)


def _documents_in(node, path=()):
    if isinstance(node, str) and '"Statement"' in node:
        try:
            node = json.loads(node)  # policies given as JSON text (e.g. log resource policies)
        except json.JSONDecodeError:
            return
    if _is_policy(node):
        yield "/".join(str(p) for p in path), node
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _documents_in(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _documents_in(value, path + (index,))


def documents_of(templates: dict[str, dict]) -> list[Document]:
    found = []
    for name, template in sorted(templates.items()):
        for lid, resource in template.get("Resources", {}).items():
            for path, body in _documents_in(resource.get("Properties", {})):
                found.append(Document(name, lid, resource.get("Type", ""), path, body))
    return found


@cache
def committed_documents() -> tuple[Document, ...]:
    templates = {p.name: json.loads(p.read_text()) for p in sorted(TEMPLATES_DIR.glob("*.json"))}
    return tuple(documents_of(templates))


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _allowlist() -> dict:
    return security_gate.load_iam_allowlist()


def _allowed_wildcard(document: Document, statement: dict, action: str) -> bool:
    for entry in _allowlist().get("wildcard_action_statements") or []:
        if (entry["resource_type"] == document.type and entry["property"] == document.path
                and entry["sid"] == statement.get("Sid") and entry["action"] == action
                and _is_account_root(statement.get("Principal"))):
            return True
    return False


def _is_account_root(principal) -> bool:
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        return False
    text = json.dumps(principal["AWS"])
    return text.endswith(':root"}') or text.endswith(':root"')


# --- the checks (each returns the problems it finds, so it can be proven on bad documents) ---


def problems_actions(document: Document) -> list[str]:
    problems = []
    for statement in document.statements:
        for forbidden in ("NotAction", "NotResource", "NotPrincipal"):
            if forbidden in statement:
                problems.append(f"{document.where(statement)}: uses {forbidden}")
        if statement.get("Effect") != "Allow":
            continue
        for action in _as_list(statement.get("Action", [])):
            wildcard = isinstance(action, str) and "*" in action
            if wildcard and not _allowed_wildcard(document, statement, action):
                problems.append(f"{document.where(statement)}: wildcard action {action!r}")
    return problems


def problems_resource_star(document: Document) -> list[str]:
    if document.kind in ("trust", "key"):
        return []  # no Resource in a trust policy; "*" in a key policy is the key itself
    allowed = _allowlist().get("resource_star_actions") or {}
    problems = []
    for statement in document.statements:
        if statement.get("Effect") != "Allow" or "*" not in _as_list(statement.get("Resource", [])):
            continue
        others = [a for a in _as_list(statement.get("Action", [])) if a not in allowed]
        if others:
            problems.append(f"{document.where(statement)}: Resource \"*\" for {others}, which are "
                            "not in security/iam-allowlist.yaml resource_star_actions")
    return problems


def problems_public_principal(document: Document) -> list[str]:
    if document.kind not in ("resource", "key"):
        return []
    return [f"{document.where(s)}: Allow to the public (Principal \"*\")"
            for s in document.statements
            if s.get("Effect") == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})]


def problems_trust(document: Document) -> list[str]:
    if document.kind != "trust":
        return []
    allowlist = _allowlist()
    required = allowlist.get("source_account_required") or {}
    absent = allowlist.get("source_account_absent") or {}
    problems, services = [], []
    for statement in document.statements:
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if not isinstance(principal, dict) or set(principal) != {"Service"}:
            problems.append(f"{document.where(statement)}: principal must be one service, not "
                            f"{json.dumps(principal)}")
            continue
        services += _as_list(principal["Service"])
        actions = _as_list(statement.get("Action", []))
        if actions != ["sts:AssumeRole"]:
            problems.append(f"{document.where(statement)}: actions {actions}, expected "
                            "[sts:AssumeRole]")
        condition = statement.get("Condition") or {}
        has_source_account = any("aws:SourceAccount" in (keys or {}) for keys in condition.values())
        for service in _as_list(principal["Service"]):
            if service in required and not has_source_account:
                problems.append(f"{document.where(statement)}: {service} sends aws:SourceAccount; "
                                "require it (StringEquals aws:SourceAccount = AWS::AccountId)")
            elif service in absent and has_source_account:
                problems.append(f"{document.where(statement)}: {service} does not send "
                                "aws:SourceAccount; the condition would make the role unusable")
            elif service not in required and service not in absent:
                problems.append(f"{document.where(statement)}: {service} is in neither "
                                "source_account_required nor source_account_absent of "
                                "security/iam-allowlist.yaml; classify it (with its reason)")
    if len(services) != 1:
        problems.append(f"{document.where()}: trust policy names {len(services)} service "
                        f"principals {services}, expected exactly one")
    return problems


CHECKS = (problems_actions, problems_resource_star, problems_public_principal, problems_trust)


# --- on the templates ---------------------------------------------------------------------------


def test_documents_are_found_in_every_kind_of_place():
    kinds = {(d.template, d.resource, d.kind) for d in committed_documents()}
    assert ("network.json", "FlowLogRole", "trust") in kinds
    assert ("network.json", "FlowLogRole", "identity") in kinds
    assert ("config.json", "KmsKey", "key") in kinds


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_every_policy_document_passes(check):
    problems = [p for document in committed_documents() for p in check(document)]
    assert problems == [], "\n".join(problems)


def test_allowlist_entries_carry_reasons():
    allowlist = _allowlist()
    entries = list((allowlist.get("resource_star_actions") or {}).items())
    entries += [(e.get("sid"), e.get("reason")) for e in allowlist.get("wildcard_action_statements") or []]
    entries += list((allowlist.get("source_account_required") or {}).items())
    entries += list((allowlist.get("source_account_absent") or {}).items())
    assert entries
    short = [name for name, reason in entries
             if len(" ".join(str(reason or "").split())) < security_gate.MIN_REASON]
    assert short == [], f"allowlist entries without a reason: {short}"


def test_the_kms_delegation_is_the_only_wildcard_action_and_it_is_used():
    used = [(d.template, d.resource, s.get("Sid"), a) for d in committed_documents()
            for s in d.statements if s.get("Effect") == "Allow"
            for a in _as_list(s.get("Action", [])) if isinstance(a, str) and "*" in a]
    assert used == [("config.json", "KmsKey", "DelegateToAccountIam", "kms:*")]


# --- each check fails on a bad document (a check that never fails is not a check) ---------------


def _doc(statement: dict, kind_path: str = "Policies/0/PolicyDocument",
         type_: str = "AWS::IAM::Role") -> Document:
    return Document("t.json", "R", type_, kind_path, {"Version": "2012-10-17", "Statement": [statement]})


BAD_DOCUMENTS = [
    (problems_actions, _doc({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"}), "wildcard"),
    (problems_actions, _doc({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b"]}),
     "wildcard"),
    (problems_actions, _doc({"Effect": "Allow", "Action": ["ecr:Batch*"], "Resource": ["arn:x"]}),
     "wildcard"),
    (problems_actions, _doc({"Effect": "Allow", "NotAction": ["iam:*"], "Resource": ["*"]}),
     "NotAction"),
    (problems_actions, _doc({"Sid": "DelegateToAccountIam", "Effect": "Allow", "Action": ["kms:*"],
                             "Principal": {"AWS": "*"}, "Resource": ["*"]},
                            "KeyPolicy", "AWS::KMS::Key"), "wildcard"),
    (problems_resource_star, _doc({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}),
     "Resource \"*\""),
    (problems_resource_star, _doc({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken",
                                                                 "ecr:BatchGetImage"],
                                   "Resource": ["*"]}), "ecr:BatchGetImage"),
    (problems_public_principal, _doc({"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
                                      "Resource": ["arn:aws:s3:::b/*"]}, "PolicyDocument",
                                     "AWS::S3::BucketPolicy"), "public"),
    (problems_trust, _doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                           "Action": ["sts:AssumeRole"]}, "AssumeRolePolicyDocument"),
     "sends aws:SourceAccount"),
    (problems_trust, _doc({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                           "Action": ["sts:AssumeRole"], "Condition": {"StringEquals": {
                               "aws:SourceAccount": "123456789012"}}}, "AssumeRolePolicyDocument"),
     "does not send"),
    (problems_trust, _doc({"Effect": "Allow", "Principal": {"Service": [
        "ec2.amazonaws.com", "ecs-tasks.amazonaws.com"]}, "Action": ["sts:AssumeRole"],
        "Condition": {"StringEquals": {"aws:SourceAccount": "1"}}}, "AssumeRolePolicyDocument"),
     "2 service principals"),
    (problems_trust, _doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
                           "Action": ["sts:AssumeRole"]}, "AssumeRolePolicyDocument"),
     "principal must be one service"),
    (problems_trust, _doc({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                           "Action": ["sts:AssumeRole"]}, "AssumeRolePolicyDocument"), "classify"),
]


@pytest.mark.parametrize(("check", "document", "expected"), BAD_DOCUMENTS,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(BAD_DOCUMENTS)])
def test_check_fails_on_a_bad_document(check, document, expected):
    problems = check(document)
    assert problems and any(expected in p for p in problems), problems


def test_checks_pass_the_compliant_shapes():
    good = [
        _doc({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]}),
        _doc({"Effect": "Deny", "Principal": "*", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b"],
              "Condition": {"Bool": {"aws:SecureTransport": "false"}}}, "PolicyDocument",
             "AWS::S3::BucketPolicy"),
        _doc({"Sid": "DelegateToAccountIam", "Effect": "Allow", "Action": ["kms:*"], "Resource": ["*"],
              "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}},
             "KeyPolicy", "AWS::KMS::Key"),
        _doc({"Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
              "Action": ["sts:AssumeRole"], "Condition": {"StringEquals": {
                  "aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}, "AssumeRolePolicyDocument"),
    ]
    problems = [p for document in good for check in CHECKS for p in check(document)]
    assert problems == []
