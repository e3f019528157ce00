"""Each side rendered for each environment with the existing renderer (tools/render.py), cached.

A rendering is keyed by the content hash of everything it depends on: the templates (root.json
holds the defaults the params file overrides), the environment's params file, and the
renderer's own source and cloud-radar version. A side that did not change between BASE and the
working tree (or between two runs) is rendered once; the results live under
.cache/review/renders/ (git-ignored).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tools.files import write_atomically
from tools.review.engine import CACHE_DIR
from tools.review.sides import Snapshot, digest

REPO = Path(__file__).resolve().parents[2]
RENDERER_SOURCES = tuple(REPO / "tools" / name for name in ("render.py", "cfn_types.py", "params.py"))


@dataclass
class Rendering:
    """One side in one environment: file name -> rendered template, or why it cannot render."""

    templates: dict[str, dict] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    region: str = "us-east-1"


def _renderer_version() -> str:
    hasher = hashlib.sha256(importlib.metadata.version("cloud-radar").encode())
    for path in RENDERER_SOURCES:
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def cache_key(snapshot: Snapshot, env: str) -> str:
    hasher = hashlib.sha256(_renderer_version().encode())
    hasher.update(digest(snapshot.templates).encode())
    hasher.update(f"\0{env}\0{snapshot.params[env]}".encode())
    return hasher.hexdigest()[:32]


def _tree(templates: dict[str, str]) -> Path:
    """A directory holding exactly these templates (render_environment reads a directory)."""
    directory = CACHE_DIR / "trees" / digest(templates)[:32]
    if not (directory / ".complete").is_file():
        for name, text in templates.items():
            write_atomically(directory / name, text)
        write_atomically(directory / ".complete", "")
    return directory


def _render(job: tuple[str, dict[str, str], str, str]) -> dict:
    key, templates, env, params_text = job
    from tools import params as params_files
    from tools import render  # cloud-radar: imported only when something must be rendered

    try:
        # The side's own defaults: a params file holds overrides of the root it was written for.
        declared = json.loads(templates.get(render.ROOT_FILE) or "{}").get("Parameters", {})
        values = params_files.effective(params_files.parse(params_text, f"params/{env}.json"),
                                        declared, f"params/{env}.json")
        result = render.render_environment(env, _tree(templates), values)
    except (render.RenderError, params_files.ParamsError) as error:
        out = {"templates": {}, "error": str(error), "notes": []}
    else:
        out = {"templates": result.templates, "error": None,
               "notes": result.notes + result.problems, "region": result.region}
    write_atomically(CACHE_DIR / "renders" / f"{key}.json", json.dumps(out, sort_keys=True))
    return out


def render_all(requests: list[tuple[Snapshot, str]], workers: int = 2) -> list[Rendering]:
    """Renderings for (snapshot, env) pairs, from the cache where possible; misses in parallel."""
    keys = [cache_key(snapshot, env) for snapshot, env in requests]
    found: dict[str, dict] = {}
    jobs: dict[str, tuple] = {}
    for key, (snapshot, env) in zip(keys, requests, strict=True):
        path = CACHE_DIR / "renders" / f"{key}.json"
        if key in found or key in jobs:
            continue
        if path.is_file():
            found[key] = json.loads(path.read_text())
        else:
            jobs[key] = (key, snapshot.templates, env, snapshot.params[env])
    if len(jobs) == 1 or workers < 2:
        for key, job in jobs.items():
            found[key] = _render(job)
    elif jobs:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for key, out in zip(jobs, pool.map(_render, jobs.values()), strict=True):
                found[key] = out
    return [Rendering(**found[key]) for key in keys]
