"""Config layer: SSM parameters from the contract, a generated secret, the rotating KMS key."""

from __future__ import annotations

from app.contract import SETTINGS, Source
from stacks import names
from tests.cfn import generated, props, resources, walk


def config():
    return generated()["config.json"]


def test_one_ssm_parameter_per_ssm_setting_of_the_contract():
    params = resources(config(), "AWS::SSM::Parameter")
    expected = {s.env for s in SETTINGS if s.source is Source.SSM}
    named = {props(p)["Name"]["Fn::Sub"].rsplit("/", 1)[1] for p in params.values()}
    assert named == expected
    for p in params.values():
        assert props(p)["Type"] == "String"
        assert props(p)["Name"]["Fn::Sub"].startswith("/${ProjectName}/${EnvironmentName}/")


def test_ssm_values_are_contract_defaults_or_root_parameters():
    by_env = {props(p)["Name"]["Fn::Sub"].rsplit("/", 1)[1]: props(p)["Value"]
              for p in resources(config(), "AWS::SSM::Parameter").values()}
    for setting in SETTINGS:
        if setting.source is not Source.SSM:
            continue
        if setting.root_parameter:
            assert by_env[setting.env] == {"Ref": setting.root_parameter}
        else:
            assert by_env[setting.env] == setting.default_text
            assert setting.default_text != "", "SSM refuses empty values"


def test_every_ssm_parameter_arn_is_an_output():
    outputs = config()["Outputs"]
    for setting in SETTINGS:
        if setting.source is Source.SSM:
            assert names.setting_parameter_output(setting.env) in outputs


def test_secret_is_generated_without_punctuation_and_has_no_literal_value():
    secret = resources(config(), "AWS::SecretsManager::Secret")["ApiKeySecret"]
    assert "SecretString" not in props(secret)
    generate = props(secret)["GenerateSecretString"]
    assert generate["ExcludePunctuation"] is True and generate["IncludeSpace"] is False
    assert generate["PasswordLength"] >= 32
    assert props(secret)["KmsKeyId"] == {"Ref": "KmsKey"}


def test_no_template_holds_a_secret_string():
    for name, template in generated().items():
        for path, _ in walk(template):
            assert "SecretString" not in path, f"{name}: {path}"


def test_kms_key_rotates_and_is_retained():
    key = resources(config(), "AWS::KMS::Key")["KmsKey"]
    assert props(key)["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain" and key["UpdateReplacePolicy"] == "Retain"


def test_stateful_resources_state_their_deletion_policy():
    stateful = {"AWS::KMS::Key", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup",
                "AWS::ECR::Repository", "AWS::S3::Bucket"}
    for template in generated().values():
        for logical_id, body in resources(template).items():
            if body["Type"] in stateful:
                assert body.get("DeletionPolicy") in ("Retain", "Delete", "Snapshot"), logical_id
                assert body.get("UpdateReplacePolicy") in ("Retain", "Delete", "Snapshot"), logical_id
