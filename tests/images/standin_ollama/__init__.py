"""The STAND-IN for ollama/Dockerfile's base image (NOT OLLAMA), on the private engine only.

`FROM ollama/ollama:<tag>` cannot be pulled here. `base()` builds this folder's Dockerfile on
the stand-in Python base (tests/images/standin.py: Debian bookworm + python3.11) with the
Ollama protocol double and the stand-in CLI copied in, and tags it with ollama/Dockerfile's
exact FROM name on the private engine (tests/images/engine.py), so that ollama/Dockerfile
builds unchanged. What the stand-in mirrors of the real image and what it does not is written in
its Dockerfile; every image built on it carries the LABEL named by STANDIN_LABEL.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.images import engine
from tests.images.common import OLLAMA_DOCKERFILE, REPO, parse_dockerfile

HERE = Path(__file__).resolve().parent
STANDIN_LABEL = "llm-api.standin.ollama"
STANDIN_REPOSITORY = "llm-api-standin/ollama"
# What the double imports beyond the standard library (tests/ollama_double.py).
DOUBLE_DISTRIBUTIONS = ("aiohttp",)
# The stand-in's files, as their paths under the repository: fake_ollama.py finds the double
# at parents[2] / "tests", as it does in the checkout.
SOURCES = ("tests/ollama_double.py", "tests/images/fake_ollama.py")
PACKAGES = ("tests/__init__.py", "tests/images/__init__.py")


def from_name(dockerfile: Path = OLLAMA_DOCKERFILE) -> str:
    """The image ollama/Dockerfile builds on (its one stage's FROM)."""
    stages = parse_dockerfile(dockerfile).stages
    if len(stages) != 1:
        raise ValueError(f"{dockerfile}: expected one stage, found {len(stages)}; the stand-in "
                         "stands in for one base image")
    return stages[0].base


def closure(names: tuple[str, ...]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions `names` need on this Python (markers evaluated here; the
    stand-in's python3.11 is the same minor version, so the same wheels apply)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        distribution = importlib.metadata.distribution(name)
        found[name] = distribution
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def copy_distribution(distribution: importlib.metadata.Distribution, site: Path) -> None:
    for file in distribution.files or []:
        source = Path(str(distribution.locate_file(file)))
        parts = Path(str(file)).parts
        if ".." in parts or "__pycache__" in parts or not source.is_file():
            continue  # console scripts outside site-packages; bytecode is compiled in the image
        target = site / Path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def context(destination: Path) -> Path:
    """The build context: this folder's Dockerfile and `ollama`, the double, the fake CLI and
    the double's dependencies from the test environment (pip cannot reach PyPI from a build)."""
    shutil.copy2(HERE / "Dockerfile", destination / "Dockerfile")
    shutil.copy2(HERE / "ollama", destination / "ollama")
    tree = destination / "standin"
    for relative in (*SOURCES, *PACKAGES):
        target = tree / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative in SOURCES:
            shutil.copy2(REPO / relative, target)
        else:
            target.write_text("")
    for distribution in closure(DOUBLE_DISTRIBUTIONS).values():
        copy_distribution(distribution, tree / "site-packages")
    return destination


def description() -> str:
    return f"STAND-IN for {from_name()}, NOT OLLAMA (tests/images/standin_ollama)"


def base() -> str:
    """Build the stand-in (Docker's layer cache makes a rebuild of unchanged files a no-op) and
    tag it with ollama/Dockerfile's FROM name on the private engine; return that name."""
    name = from_name()
    python = engine.standin_python_base()
    with tempfile.TemporaryDirectory(prefix="standin-ollama-") as scratch:
        engine.build_image(STANDIN_REPOSITORY + ":latest", context(Path(scratch)),
                           build_args={"BASE": python, "STANDS_IN_FOR": name})
    engine.docker("tag", STANDIN_REPOSITORY + ":latest", name)
    return name
