"""params/<env>.json: the reader's errors, and what the real AWS CLI makes of the files."""

from __future__ import annotations

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
    with pytest.raises(params.ParamsError, match="known: dev, prod"):
        params.load_env("staging")


@pytest.mark.parametrize("env", params.environments())
def test_committed_files_are_in_the_canonical_form(env):
    path = REPO / "params" / f"{env}.json"
    assert path.read_text() == params.render(params.load(path))


@pytest.mark.parametrize("env", params.environments())
def test_aws_cli_reads_the_file_as_parameter_overrides(env, monkeypatch, tmp_path):
    """Runs the real `aws cloudformation deploy` argument handling (AWS CLI v1 from PyPI) with
    --parameter-overrides file://params/<env>.json and captures what it would send."""
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
        "--stack-name", "params-test", "--parameter-overrides", f"file://params/{env}.json",
    ])
    assert rc == 0
    sent = {p["ParameterKey"]: p.get("ParameterValue") for p in captured["parameters"]}
    for key, value in params.load_env(env).items():
        assert sent[key] == value
