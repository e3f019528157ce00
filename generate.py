#!/usr/bin/env python3
"""Write the CloudFormation templates: one per layer, the root that nests them, the registry.

    python generate.py             write templates/*.json and the generated doc sections
    python generate.py --check     write nothing; exit 1 naming every stale template or section
    python generate.py --out DIR   write the templates to DIR instead of templates/ (no docs)
    python generate.py --templates-only [--check]   the templates alone

No AWS call is made. Output is byte-identical on every run (sorted keys, fixed indent). The
generated tables of the README and docs/ (tools/docs.py) are written after the templates, from
them: only the tables whose inputs changed are produced again. Files derived from app/contract.py
(gateway.env for compose, the field list of app/settings.py, and the default model and ports
that compose, .env.example, the Dockerfiles and docs/images.md hold; tools/contract_files.py)
are written and checked with them.

A timeout budget whose inequalities fail (TimeoutBudget.violations()) or a setting declaration
that breaks its own bounds is refused before anything is written: exit 2, one line per rule.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from stacks import build_all  # noqa: E402
from stacks.base import to_json  # noqa: E402
from stacks.root import WiringError  # noqa: E402
from stacks.settings import GenerationSettings, SettingsError  # noqa: E402
from tools import contract_files, docs  # noqa: E402
from tools.files import write_atomically  # noqa: E402

DEFAULT_OUT = REPO / "templates"
DEFAULT_SETTINGS = REPO / "generation.toml"


def render(settings: GenerationSettings) -> dict[str, str]:
    """File name -> JSON text of every template."""
    return {name: to_json(template) for name, template in sorted(build_all(settings).items())}


def stale(rendered: dict[str, str], out: Path) -> list[str]:
    """Names of templates whose file under out differs from what generation gives, or is extra."""
    differing = []
    for name, text in rendered.items():
        path = out / name
        if not path.is_file() or path.read_text() != text:
            differing.append(name)
    extra = sorted(p.name for p in out.glob("*.json") if p.name not in rendered) if out.is_dir() else []
    return differing + [f"{name} (not generated any more)" for name in extra]


def write(rendered: dict[str, str], out: Path) -> list[str]:
    """Write every changed template atomically (temp file + rename): no half-written template."""
    changed = []
    for name, text in rendered.items():
        path = out / name
        if path.is_file() and path.read_text() == text:
            continue
        write_atomically(path, text)
        changed.append(name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate the CloudFormation templates (one per layer, root.json nesting "
                    "them, and the standalone registry.json). Makes no AWS call.",
    )
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and name every template that differs from "
                             "the files in the output directory (for CI and pre-commit)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help="output directory (default: templates/)")
    parser.add_argument("--templates-only", action="store_true",
                        help="leave the generated doc sections alone (write or check templates)")
    parser.add_argument("--settings", type=Path, default=DEFAULT_SETTINGS, metavar="FILE",
                        help="generation settings file (default: generation.toml)")
    args = parser.parse_args(argv)

    refused = contract_files.budget_problems()
    if refused:
        for problem in refused:
            print(f"generate.py: error: {problem}", file=sys.stderr)
        print("generate.py: nothing written; fix app/contract.py", file=sys.stderr)
        return 2

    try:
        settings = GenerationSettings.from_file(args.settings)
        rendered = render(settings)
    except (SettingsError, WiringError) as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 2

    # The docs describe the committed templates: not written for another output directory.
    with_docs = args.out.resolve() == DEFAULT_OUT and not args.templates_only
    if args.check:
        differing = stale(rendered, args.out)
        for name in differing:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if differing:
            print("generate.py: templates are out of date; run `make generate` and commit them",
                  file=sys.stderr)
            return 1
        try:
            derived = contract_files.update(check=True) if with_docs else []
            sections = docs.update(check=True) if with_docs else []
        except (docs.DocsError, contract_files.ContractFileError) as error:
            print(f"generate.py: error: {error}", file=sys.stderr)
            return 2
        for name in derived:
            print(f"stale: {name} (derived from app/contract.py)", file=sys.stderr)
        for section in sections:
            print(f"stale: generated section {section}", file=sys.stderr)
        if derived or sections:
            print("generate.py: generated files or doc sections are out of date; run `make "
                  "generate` and commit them", file=sys.stderr)
            return 1
        print(f"{len(rendered)} templates up to date in {args.out}"
              + (f"; {len(docs.SECTIONS)} generated doc sections current" if with_docs else ""))
        return 0

    changed = write(rendered, args.out)
    print(f"wrote {len(rendered)} templates to {args.out} ({len(changed)} changed)")
    if with_docs:
        try:
            derived = contract_files.update()
            sections = docs.update()
        except (docs.DocsError, contract_files.ContractFileError) as error:
            print(f"generate.py: error: {error}", file=sys.stderr)
            return 2
        print(f"{len(contract_files.rendered())} files derived from app/contract.py "
              f"({len(derived)} changed)")
        print(f"{len(docs.SECTIONS)} generated doc sections ({len(sections)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
