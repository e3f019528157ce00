"""The pull-request workflows of the template review: the report step runs here against a fixture
change (in a scratch clone), and the comment step's script runs in node against a stand-in for
GitHub's API (a recording fake of `github.rest.issues`; posting itself needs GitHub)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from tools import params as params_files
from tools.review import engine
from tools.review import report as formats

REPO = engine.REPO
WORKFLOWS = REPO / ".github" / "workflows"
REPORT = WORKFLOWS / "template-review.yml"
COMMENT = WORKFLOWS / "template-review-comment.yml"
BIN = REPO / ".venv" / "bin"


def _load(path):
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


@pytest.mark.parametrize("path", [REPORT, COMMENT], ids=lambda p: p.name)
def test_workflow_matches_the_github_workflow_schema(path):
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", str(path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_report_job_is_read_only_with_full_history_and_keeps_the_report():
    workflow = _load(REPORT)
    assert "pull_request" in workflow["on"] and "pull_request_target" not in workflow["on"]
    assert workflow["permissions"] == {"contents": "read"}
    [job] = workflow["jobs"].values()
    assert "permissions" not in job
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    run = _report_step(workflow)["run"]
    assert "--summary" in run and "--out review/report.md" in run and "--format md" in run
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "review/report.md"


def test_comment_job_never_runs_the_pull_requests_code_and_skips_forks():
    workflow = _load(COMMENT)
    assert workflow["on"]["workflow_run"]["workflows"] == [_load(REPORT)["name"]]
    assert workflow["permissions"] == {}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    assert "head_repository.full_name == github.repository" in job["if"]
    assert "conclusion == 'success'" in job["if"]
    assert not any(s.get("uses", "").startswith("actions/checkout") for s in job["steps"])
    assert not any("run" in s for s in job["steps"]), "no shell step: nothing from the PR runs"


def _report_step(workflow):
    [job] = workflow["jobs"].values()
    return next(s for s in job["steps"] if s.get("name") == "Build the report")


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)


def test_report_step_builds_the_markdown_it_would_post_for_a_fixture_change(tmp_path):
    """The step's own shell text, run in a clone whose prod params move the ALB inside."""
    clone = tmp_path / "clone"
    _git(REPO, "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone))
    branch = _git(clone, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    # The fixture change: a params-only change in prod (templates stay fresh against generate.py).
    prod = clone / "params" / "prod.json"
    values = params_files.load(prod)
    values["LoadBalancerScheme"] = "internal"
    prod.write_text(params_files.render(values))
    (clone / ".venv").symlink_to(REPO / ".venv")
    summary = tmp_path / "summary.md"
    env = {**os.environ, "BASE_REF": branch, "GITHUB_STEP_SUMMARY": str(summary),
           "TEMPLATE_REVIEW_CACHE": str(engine.CACHE_DIR)}
    result = subprocess.run(["bash", "-e", "-c", _report_step(_load(REPORT))["run"]], cwd=clone,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    posted = (clone / "review" / "report.md").read_text()
    assert posted.startswith(formats.MARKER)
    assert f"`origin/{branch} (" in posted and "Changed: `params/prod.json`" in posted
    assert ("- **prod** · `load_balancer` · replace: ElasticLoadBalancingV2::LoadBalancer "
            "LoadBalancer is replaced (Scheme)") in posted
    assert "**dev**" not in posted.split("| environment |")[0], "dev has no finding"
    assert "| dev | no change here |" in posted
    assert summary.read_text() == posted


COMMENT_HARNESS = """
const fs = require('fs');
const state = JSON.parse(process.env.STATE);
const calls = [];
const github = {
  paginate: async (fn, args) => state.comments.filter((c) => c.issue === args.issue_number),
  rest: { issues: {
    listComments: 'listComments',
    updateComment: async (a) => { calls.push(['update', a.comment_id, a.body]); },
    createComment: async (a) => { calls.push(['create', a.issue_number, a.body]); },
  } },
};
const context = { repo: { owner: 'o', repo: 'r' } };
const core = { setFailed: (m) => calls.push(['failed', m]) };
(async () => { %s })().then(() => process.stdout.write(JSON.stringify(calls)));
"""


def _run_comment_script(tmp_path, comments, pr_number="7"):
    [job] = _load(COMMENT)["jobs"].values()
    script = next(s for s in job["steps"] if "github-script" in s.get("uses", ""))["with"]["script"]
    (tmp_path / "review").mkdir(exist_ok=True)
    (tmp_path / "review" / "report.md").write_text(f"{formats.MARKER}\n### Template review\n")
    node = shutil.which("node")
    result = subprocess.run([node, "-e", COMMENT_HARNESS % script], cwd=tmp_path,
                            env={**os.environ, "STATE": json.dumps({"comments": comments}),
                                 "PR_NUMBER": pr_number},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_comment_script_creates_one_comment_then_updates_it(tmp_path):
    human = {"id": 1, "issue": 7, "user": {"type": "User"}, "body": f"{formats.MARKER} quoted"}
    [created] = _run_comment_script(tmp_path, [human])
    assert created[0] == "create" and created[1] == 7 and created[2].startswith(formats.MARKER)
    ours = {"id": 2, "issue": 7, "user": {"type": "Bot"}, "body": created[2]}
    assert _run_comment_script(tmp_path, [human, ours]) == [["update", 2, created[2]]]


def test_comment_script_refuses_a_run_without_a_pull_request_number(tmp_path):
    [[kind, message]] = _run_comment_script(tmp_path, [], pr_number="")
    assert kind == "failed" and "no pull request number" in message
