"""tools/reference.py: the parameter reference follows the root template and every params file."""

from __future__ import annotations

import json

from tools import params, reference

ROOT = {
    "Parameters": {
        "Size": {"Type": "Number", "Default": 2, "MinValue": 1, "MaxValue": 9,
                 "Description": "how | many"},
        "Name": {"Type": "String", "Description": "no default"},
        "Flag": {"Type": "String", "AllowedValues": ["true", "false"], "Default": "false"},
    },
    "Resources": {
        "Network": {"Type": "AWS::CloudFormation::Stack",
                    "Properties": {"Parameters": {"Size": {"Ref": "Size"},
                                                  "Joined": {"Fn::Join": [",", {"Ref": "Name"}]}}}},
        "Service": {"Type": "AWS::CloudFormation::Stack",
                    "Properties": {"Parameters": {"Label": {"Fn::Sub": "x-${Name}"}}}},
    },
}


def table(tmp_path, monkeypatch, files):
    (tmp_path / "params").mkdir()
    for env, entries in files.items():
        (tmp_path / "params" / f"{env}.json").write_text(json.dumps(entries))
    monkeypatch.setattr(params, "PARAMS_DIR", tmp_path / "params")
    (tmp_path / "root.json").write_text(json.dumps(ROOT))
    return reference.parameters_table(tmp_path / "root.json")


def test_groups_by_reading_layers_with_a_column_per_environment(tmp_path, monkeypatch):
    text = table(tmp_path, monkeypatch, {"dev": ["Size=3", "Name=a"], "prod": ["Name=b"],
                                         "staging": ["Size=4"]})
    assert "### Network\n" in text and "### Network, Service\n" in text
    assert "### root (not passed to a layer)" in text  # Flag reaches no layer
    assert "| parameter | type | allowed | default | dev | prod | staging | meaning |" in text
    # Effective values: bold where the params file sets it, plain where the Default applies.
    assert "| `Size` | Number | 1..9 | `2` | **`3`** | `2` | **`4`** | how \\| many |" in text
    assert "| `Name` | String |  | none | **`a`** | **`b`** | **missing** | no default |" in text
    assert "| `Flag` | String | `true` / `false` | `false` | `false` | `false` | `false` |  |" in text
    assert "`true` / `false`" in text


def test_layers_reading_follows_ref_inside_functions():
    assert reference.layers_reading(ROOT) == {"Size": ["Network"], "Name": ["Network", "Service"]}
