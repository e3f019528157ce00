"""The CloudFormation diff engine: @aws-cdk/cloudformation-diff (the engine of `cdk diff`) in node.

Pinned by tools/review/package-lock.json and installed once, with `npm ci --omit=peer
--ignore-scripts`, into .cache/review/node-<hash of the lock>/ (git-ignored): it works without
its AWS SDK peer (the SDK is needed only to read a live change set, which we never do). One node
process diffs every template pair of one or many reports (tools/review/cfn_diff.js).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parent
SCRIPT = PACKAGE_DIR / "cfn_diff.js"
# TEMPLATE_REVIEW_CACHE moves it (tests point a scratch clone at the repository's cache).
CACHE_DIR = Path(os.environ.get("TEMPLATE_REVIEW_CACHE") or REPO / ".cache" / "review")
PACKAGE_FILES = ("package.json", "package-lock.json")
NODE_HINT = ("install Node.js 18+ and npm (Debian/Ubuntu: apt-get install -y --no-install-recommends "
             "nodejs npm)")


class ToolMissing(RuntimeError):
    """node or npm is not installed, or the pinned package cannot be installed; says the fix."""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ToolMissing(f"`{name}` is not on PATH; make diff needs it for "
                          f"@aws-cdk/cloudformation-diff: {NODE_HINT}")
    return found


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in PACKAGE_FILES:
        digest.update((PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def modules_dir() -> Path:
    """node_modules holding the pinned package; installed on first use (a few seconds)."""
    target = CACHE_DIR / f"node-{_lock_digest()}"
    if (target / ".installed").is_file():
        return target / "node_modules"
    npm = _tool("npm")
    _tool("node")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=".install-"))
    try:
        for name in PACKAGE_FILES:
            shutil.copy2(PACKAGE_DIR / name, staging / name)
        result = subprocess.run(  # noqa: S603 (fixed argv, no shell)
            [npm, "ci", "--omit=peer", "--ignore-scripts", "--no-audit", "--no-fund",
             "--loglevel=error"],
            cwd=staging, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            raise ToolMissing("npm ci of tools/review/package-lock.json failed (the npm registry "
                              f"must be reachable once):\n{result.stdout}{result.stderr}")
        (staging / ".installed").write_text("npm ci --omit=peer --ignore-scripts\n")
        try:
            staging.rename(target)  # atomic: a parallel install that won leaves its copy in place
        except OSError:
            if not (target / ".installed").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"


def diff_pairs(pairs: list[dict]) -> dict[str, dict]:
    """{"key", "old", "new"} template pairs -> key -> the engine's structured result."""
    if not pairs:
        return {}
    node = _tool("node")
    env = {**os.environ, "CFN_DIFF_MODULES": str(modules_dir()), "FORCE_COLOR": "0",
           "NO_COLOR": "1"}
    result = subprocess.run([node, str(SCRIPT)],  # noqa: S603 (fixed argv, no shell)
                            input=json.dumps({"pairs": pairs}), env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} failed (exit {result.returncode}): {result.stderr}")
    return {item["key"]: item for item in json.loads(result.stdout)["results"]}
