"""params/<env>.json: overrides of the declared defaults; the reader's errors; what the real
AWS CLI makes of the files."""

from __future__ import annotations

import json

import pytest

from tests.cfn import REPO
from tools import params


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"A": "1"}', 'must be a JSON list of "Key=Value" strings'),
        ('["A"]', "entry 0 ('A') is not a \"Key=Value\" string"),
        ('["=1"]', "entry 0 ('=1') is not"),
        ('[1]', "entry 0 (1) is not"),
        ('["A=1", "A=2"]', "A is set twice"),
    ],
)
def test_malformed_params_are_refused_with_the_entry_named(text, message):
    with pytest.raises(params.ParamsError, match="x.json: ") as error:
        params.parse(text, "x.json")
    assert message in str(error.value)


def test_values_may_contain_equals_and_commas():
    assert params.parse('["A=b=c", "Z=us-east-1a,us-east-1b"]', "x") == {
        "A": "b=c", "Z": "us-east-1a,us-east-1b"}


def test_render_round_trips_one_entry_per_line():
    values = {"A": "1", "B": "x,y"}
    text = params.render(values)
    assert params.parse(text, "x") == values
    assert text.count("\n") == len(values) + 2


def test_unknown_environment_names_the_known_ones():
    unknown = "-".join(params.environments()) + "-x"
    with pytest.raises(params.ParamsError) as error:
        params.load_env(unknown)
    assert f"known: {', '.join(params.environments())}" in str(error.value)


# A root template and params directory made for these tests (not the shipped ones).
ROOT = {"Parameters": {
    "Size": {"Type": "Number", "Default": 2},
    "Name": {"Type": "String"},
    "Flag": {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"]},
}}


@pytest.fixture
def made(tmp_path, monkeypatch):
    (tmp_path / "params").mkdir()
    (tmp_path / "root.json").write_text(json.dumps(ROOT))
    monkeypatch.setattr(params, "PARAMS_DIR", tmp_path / "params")

    def write(env: str, values: dict[str, str]) -> None:
        (tmp_path / "params" / f"{env}.json").write_text(params.render(values))

    return tmp_path / "root.json", write


def test_effective_values_are_the_defaults_with_the_file_over_them_in_the_templates_order(made):
    root, write = made
    write("small", {"Name": "a", "Size": "3"})
    assert params.load_overrides("small") == {"Name": "a", "Size": "3"}
    assert list(params.load_env("small", root).items()) == [
        ("Size", "3"), ("Name", "a"), ("Flag", "false")]


def test_a_parameter_without_default_that_the_file_leaves_out_has_no_value(made):
    root, write = made
    write("bare", {})
    assert params.load_env("bare", root) == {"Size": "2", "Flag": "false"}


def test_a_misspelt_override_is_refused_naming_the_file_and_the_close_match(made):
    root, write = made
    write("typo", {"Name": "a", "Sise": "4"})
    with pytest.raises(params.ParamsError, match=r"params/typo.json: Sise is not a parameter of the "
                                                 r"root template; did you mean Size\?"):
        params.load_env("typo", root)


def test_the_defaults_come_from_the_root_template_given(made, tmp_path):
    root, write = made
    write("small", {"Name": "a"})
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"Parameters": {**ROOT["Parameters"],
                                                "Size": {"Type": "Number", "Default": 7}}}))
    assert params.load_env("small", root)["Size"] == "2"
    assert params.load_env("small", other)["Size"] == "7"
    with pytest.raises(params.ParamsError, match="missing.json: not found; run `make generate`"):
        params.load_env("small", tmp_path / "missing.json")


@pytest.mark.parametrize("env", params.environments())
def test_each_shipped_file_sets_only_declared_parameters_and_the_rest_are_defaults(env):
    declared = params.declared()
    file_sets = params.load_overrides(env)
    values = params.load_env(env)
    assert set(file_sets) <= set(declared)
    assert values == {name: file_sets.get(name, str(declared[name].get("Default")))
                      for name in declared if name in file_sets or "Default" in declared[name]}


@pytest.mark.parametrize("env", params.environments())
def test_the_manual_path_file_holds_every_effective_value_and_the_extra_ones(env, capsys):
    assert params.main([env, "ImageTag=abc"]) == 0
    printed = params.parse(capsys.readouterr().out, "stdout")
    assert printed == {**params.load_env(env), "ImageTag": "abc"}


@pytest.mark.parametrize(("argv", "message"), [
    ([], "usage: python -m tools.params ENV"),
    (["no-such-env"], "no params file for environment 'no-such-env'"),
    (["{env}", "ImageTg=abc"], "ImageTg is not a parameter of the root template; did you mean "
                               "ImageTag?"),
    (["{env}", "ImageTag"], "entry 0 ('ImageTag') is not a \"Key=Value\" string"),
])
def test_the_manual_path_file_refuses_bad_arguments(argv, message, capsys):
    env = params.environments()[0]
    assert params.main([a.format(env=env) for a in argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("env", params.environments())
def test_committed_files_are_in_the_canonical_form(env):
    path = REPO / "params" / f"{env}.json"
    assert path.read_text() == params.render(params.load(path))


def cli_sends(path: str, monkeypatch, tmp_path) -> dict[str, str | None]:
    """Runs the real `aws cloudformation deploy` argument handling (AWS CLI v1 from PyPI) with
    --parameter-overrides file://path against templates/root.json and captures what it would
    send: key -> value, None for UsePreviousValue."""
    from awscli.clidriver import create_clidriver
    from awscli.customizations.cloudformation.deploy import DeployCommand

    captured = {}

    def fake_deploy(self, deployer, stack_name, template_str, parameters, *args, **kwargs):
        captured["parameters"] = parameters
        return 0

    monkeypatch.setattr(DeployCommand, "deploy", fake_deploy)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.chdir(REPO)
    rc = create_clidriver().main([
        "cloudformation", "deploy", "--template-file", "templates/root.json",
        "--stack-name", "params-test", "--parameter-overrides", f"file://{path}",
    ])
    assert rc == 0
    return {p["ParameterKey"]: None if p.get("UsePreviousValue") else p["ParameterValue"]
            for p in captured["parameters"]}


@pytest.mark.parametrize("env", params.environments())
def test_aws_cli_sends_every_effective_value_from_the_manual_path_file(env, monkeypatch, tmp_path,
                                                                        capsys):
    assert params.main([env, "ImageTag=abc"]) == 0
    (tmp_path / "values.json").write_text(capsys.readouterr().out)
    sent = cli_sends(str(tmp_path / "values.json"), monkeypatch, tmp_path)
    assert sent == {**params.load_env(env), "ImageTag": "abc"}


@pytest.mark.parametrize("env", params.environments())
def test_aws_cli_keeps_previous_values_for_what_the_bare_params_file_leaves_out(env, monkeypatch,
                                                                               tmp_path):
    """Why the manual path passes the effective file: with params/<env>.json alone, the CLI
    (merge_parameters) sends UsePreviousValue for each declared parameter the file omits."""
    sent = cli_sends(f"params/{env}.json", monkeypatch, tmp_path)
    file_sets = params.load_overrides(env)
    assert {k: v for k, v in sent.items() if v is not None} == file_sets
    assert {k for k, v in sent.items() if v is None} == set(params.declared()) - set(file_sets)
