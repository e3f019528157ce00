"""The two sides of a review: templates/ and params/ at a git ref, and in the working tree."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIRECTORIES = ("templates", "params")
MAIN_BRANCHES = ("main", "origin/main")


class ReviewError(ValueError):
    """The review cannot run: the message says what is wrong and the fix."""


@dataclass(frozen=True)
class Snapshot:
    """One side: file name -> text, for templates/*.json and params/<env>.json."""

    label: str
    templates: dict[str, str]
    params: dict[str, str]  # environment -> params file text

    def changed_files(self, other: Snapshot) -> list[str]:
        """Repository paths that differ between self (base) and other."""
        out = []
        for directory, mine, theirs in (("templates", self.templates, other.templates),
                                        ("params", self.params, other.params)):
            for name in sorted(set(mine) | set(theirs)):
                if mine.get(name) != theirs.get(name):
                    file_name = name if directory == "templates" else f"{name}.json"
                    out.append(f"{directory}/{file_name}")
        return out


def digest(texts: dict[str, str]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(texts):
        hasher.update(f"{name}\0{len(texts[name])}\0".encode())
        hasher.update(texts[name].encode())
    return hasher.hexdigest()


def _git(*args: str, repo: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,  # noqa: S603, S607
                          check=False)


def resolve_base(ref: str | None, repo: Path = REPO) -> tuple[str, str]:
    """(commit, label) of BASE; without one, the merge base of HEAD with the main branch."""
    if ref:
        found = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", repo=repo)
        if found.returncode != 0:
            raise ReviewError(f"BASE={ref!r} is not a git ref or commit here. Use a branch, tag "
                              "or commit (git branch -a lists them); in a shallow clone fetch the "
                              "history first (git fetch --unshallow, or checkout with "
                              "fetch-depth: 0)")
        return found.stdout.strip(), ref
    candidates = ([f"origin/{os.environ['GITHUB_BASE_REF']}"]
                  if os.environ.get("GITHUB_BASE_REF") else []) + list(MAIN_BRANCHES)
    for branch in candidates:
        base = _git("merge-base", "HEAD", branch, repo=repo)
        if base.returncode == 0:
            return base.stdout.strip(), f"merge base with {branch}"
    raise ReviewError(f"no merge base of HEAD with {' or '.join(candidates)}: name the base, "
                      "e.g. make diff BASE=<branch, tag or commit> (in a shallow clone fetch "
                      "the history first: git fetch --unshallow)")


def snapshot_at(commit: str, label: str, repo: Path = REPO) -> Snapshot:
    listing = _git("ls-tree", "-r", "--name-only", commit, "--", *DIRECTORIES, repo=repo)
    if listing.returncode != 0:
        raise ReviewError(f"cannot list templates/ and params/ at {label}: {listing.stderr.strip()}")
    files = {}
    for path in listing.stdout.split():
        directory, _, name = path.partition("/")
        if "/" in name or not name.endswith(".json"):
            continue
        shown = _git("show", f"{commit}:{path}", repo=repo)
        if shown.returncode != 0:
            raise ReviewError(f"cannot read {path} at {label}: {shown.stderr.strip()}")
        files[(directory, name)] = shown.stdout
    return Snapshot(
        label=label,
        templates={name: text for (d, name), text in files.items() if d == "templates"},
        params={name[:-5]: text for (d, name), text in files.items() if d == "params"})


def working_tree(repo: Path = REPO) -> Snapshot:
    return Snapshot(
        label="working tree",
        templates={p.name: p.read_text() for p in sorted((repo / "templates").glob("*.json"))},
        params={p.stem: p.read_text() for p in sorted((repo / "params").glob("*.json"))})


def check_fresh(repo: Path = REPO) -> None:
    """Refuse to review stale templates: the diff would not be what the generator writes."""
    result = subprocess.run([sys.executable,  # noqa: S603 (fixed argv)
                             str(repo / "generate.py"), "--check", "--templates-only"], cwd=repo,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ReviewError("templates/ is stale against the generator (generate.py --check):\n"
                          f"{result.stderr.strip()}\nFix: make generate (and commit templates/), then "
                          "run make diff again")
