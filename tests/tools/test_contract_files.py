"""tools/contract_files.py MARKED: compose, .env.example, the images and docs/images.md hold the
contract's default model and ports, written by generate.py and checked by `generate.py --check`."""

from __future__ import annotations

import re
import shutil

import pytest

from app import contract
from tests.cfn import REPO
from tools import contract_files

MARKED_FILES = sorted({mark.path for mark in contract_files.MARKED})
# What each followed name is set to in these tests: made from the contract's, never equal to it.
OTHER = {"DEFAULT_MODEL": f"{contract.DEFAULT_MODEL}-other", "OLLAMA_PORT": contract.OLLAMA_PORT + 1,
         "GATEWAY_PORT": contract.GATEWAY_PORT + 1}
CONSTANT = {"DEFAULT_MODEL": "DEFAULT_MODEL", "OLLAMA_PORT": "OLLAMA_PORT",
            "GATEWAY_PORT": "GATEWAY_PORT"}


def values_at(mark: contract_files.Marked, text: str) -> list[str]:
    return [m.group("value") for m in re.finditer(mark.pattern, text, re.MULTILINE)]


@pytest.mark.parametrize("mark", contract_files.MARKED, ids=lambda m: f"{m.path}:{m.follows}")
def test_every_marked_place_holds_the_contracts_value(mark):
    found = values_at(mark, (REPO / mark.path).read_text())
    assert found, f"{mark.path}: {mark.pattern} matches nothing"
    assert set(found) == {str(getattr(contract, CONSTANT[mark.follows]))}


@pytest.fixture
def repo(tmp_path):
    """The files generate.py derives from the contract, copied (the test rewrites them)."""
    for name in [*MARKED_FILES, contract_files.SETTINGS_MODULE, contract_files.ENV_FILE]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("follows", sorted(OTHER))
def test_a_contract_change_rewrites_every_marked_place_and_nothing_else(repo, monkeypatch, follows):
    before = {name: (repo / name).read_text() for name in MARKED_FILES}
    monkeypatch.setattr(contract, CONSTANT[follows], OTHER[follows])

    stale = contract_files.update(repo, check=True)
    touched = sorted({m.path for m in contract_files.MARKED if m.follows == follows})
    assert sorted(set(stale) & set(MARKED_FILES)) == touched
    assert contract_files.update(repo) == stale
    for mark in contract_files.MARKED:
        text = (repo / mark.path).read_text()
        expected = str(OTHER[follows]) if mark.follows == follows else mark.value()
        assert set(values_at(mark, text)) == {expected}, mark
    for name in MARKED_FILES:  # only the values moved: the lines around them are as they were
        after = (repo / name).read_text()
        assert after.count("\n") == before[name].count("\n")
    assert contract_files.update(repo, check=True) == []


def test_check_names_a_marked_value_edited_by_hand(repo):
    compose = repo / "docker-compose.yml"
    compose.write_text(compose.read_text().replace(f":-{contract.DEFAULT_MODEL}}}", ":-other:1b}", 1))
    assert contract_files.update(repo, check=True) == ["docker-compose.yml"]


def test_a_marked_line_that_is_gone_is_an_error_naming_the_file_and_the_value(repo):
    dockerfile = repo / "ollama" / "Dockerfile"
    dockerfile.write_text(re.sub(r"(?m)^ARG MODEL=.*$", "ARG MODEL", dockerfile.read_text()))
    with pytest.raises(contract_files.ContractFileError,
                       match=r"ollama/Dockerfile: nothing matches .* DEFAULT_MODEL from "
                             r"app/contract.py; put the line back"):
        contract_files.update(repo, check=True)


@pytest.mark.parametrize("model", ["Llama3", "a b", "x}", "a$b", ""])
def test_a_default_model_the_files_cannot_hold_unquoted_is_refused(repo, monkeypatch, model):
    monkeypatch.setattr(contract, "DEFAULT_MODEL", model)
    with pytest.raises(contract_files.ContractFileError, match="is not an Ollama model name"):
        contract_files.update(repo, check=True)
