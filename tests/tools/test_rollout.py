"""tools/rollout.py: passes on the shipped params, fails with the numbers and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stacks.gpu import GPUS_PER_INSTANCE
from tests.cfn import REPO
from tools import params, rollout


def test_every_shipped_environment_can_roll_out():
    assert rollout.main([]) == 0


def test_command_line_runs_alone_and_prints_a_table():
    result = subprocess.run([sys.executable, "-m", "tools.rollout"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for env in params.environments():
        assert f"\n{env} " in "\n" + result.stdout


def test_a_params_file_that_would_deadlock_fails_naming_env_numbers_and_fix(tmp_path, monkeypatch,
                                                                            capsys):
    values = params.load_env("prod")
    values.update({"AsgMaxSize": "3", "InstanceType": "g5.xlarge", "ServiceMaxTasks": "4",
                   "DeploymentMaximumPercent": "200", "DeploymentMinimumHealthyPercent": "100"})
    (tmp_path / "tight.json").write_text(params.render(values))
    monkeypatch.setattr(params, "PARAMS_DIR", tmp_path)

    assert rollout.main(["tight"]) == 1
    err = capsys.readouterr().err
    assert "params/tight.json (tight)" in err
    assert "ceil(4 x 200 / 100 / 1) = 8 g5.xlarge" in err
    assert "AsgMaxSize is 3" in err
    assert "raise AsgMaxSize to 8" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DeploymentMinimumHealthyPercent": "50"}, "downtime"),
        ({"ServiceMaxTasks": "1", "DeploymentMaximumPercent": "150"},
         "allows no extra task during a deploy"),
        ({"ServiceMinTasks": "5", "ServiceMaxTasks": "2"}, "is above ServiceMaxTasks=2"),
        ({"AsgMaxSize": "2", "ServiceMaxTasks": "2", "DeploymentMaximumPercent": "200",
          "InstanceType": "g5.12xlarge"}, None),  # 4 GPUs each: 1 instance suffices
        ({"AsgMaxSize": "3", "ServiceMaxTasks": "2", "DeploymentMaximumPercent": "200"},
         "raise AsgMaxSize to 4, or lower DeploymentMaximumPercent to 150"),
    ],
)
def test_sizing_cases(change, message):
    values = {**params.load_env("prod"), **change}
    problems = rollout.sizing("case", values).problems()
    if message is None:
        assert problems == []
    else:
        assert any(message in p for p in problems), problems


def test_unknown_instance_type_is_refused_with_the_allowed_list():
    unknown = "x1.unknown"  # a type made for the test: no GPU table will ever hold it
    assert unknown not in GPUS_PER_INSTANCE
    values = {**params.load_env("dev"), "InstanceType": unknown}
    with pytest.raises(params.ParamsError) as error:
        rollout.sizing("dev", values)
    assert (f"InstanceType={unknown!r} has no known GPU count; allowed: "
            f"{', '.join(sorted(GPUS_PER_INSTANCE))}") in str(error.value)
