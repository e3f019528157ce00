"""tools/model_budget.py: every params file's grace period covers its model load (stacks/model_load.py)."""

from __future__ import annotations

import pytest

from stacks import model_load
from tools import model_budget, params, rollout


def test_every_shipped_environment_covers_its_model_load():
    assert model_budget.main([]) == 0


PROD = params.load_env("prod")


def write_env(tmp_path, monkeypatch, name: str, change: dict[str, str]) -> None:
    values = {**PROD, **change}
    (tmp_path / f"{name}.json").write_text(params.render(values))
    monkeypatch.setattr(params, "PARAMS_DIR", tmp_path)


def test_a_bigger_model_in_one_environment_needs_its_own_grace(tmp_path, monkeypatch, capsys):
    # 1800 s load: Ollama check every 170 s (300 + 170 x 10 = 2000 >= 1800 + 170);
    # grace >= 1800 + 170 + 2 x 15 = 2000.
    write_env(tmp_path, monkeypatch, "big", {"ModelLoadSeconds": "1800",
                                             "HealthCheckGracePeriodSeconds": "900",
                                             "HealthCheckIntervalSeconds": "15",
                                             "HealthyThresholdCount": "2"})
    assert model_budget.main(["big"]) == 1
    err = capsys.readouterr().err
    assert "params/big.json (big)" in err
    assert "ModelLoadSeconds 1800 + Ollama check interval 170 + HealthyThresholdCount 2 x " \
           "HealthCheckIntervalSeconds 15 = 2000 s" in err
    assert "set HealthCheckGracePeriodSeconds=2000" in err

    write_env(tmp_path, monkeypatch, "big", {"ModelLoadSeconds": "1800",
                                             "HealthCheckGracePeriodSeconds": "2000",
                                             "HealthCheckIntervalSeconds": "15",
                                             "HealthyThresholdCount": "2"})
    assert model_budget.main(["big"]) == 0


def test_the_rollout_check_runs_the_budget_check_too(tmp_path, monkeypatch, capsys):
    write_env(tmp_path, monkeypatch, "slowalb", {"HealthCheckIntervalSeconds": "300",
                                                 "HealthyThresholdCount": "10"})
    assert rollout.main(["slowalb"]) == 1  # sizing is fine; 600 + 35 + 10 x 300 > 900
    assert "set HealthCheckGracePeriodSeconds=3635" in capsys.readouterr().err


def test_a_load_time_that_is_not_a_tier_is_refused_with_the_tiers():
    with pytest.raises(params.ParamsError, match=r"ModelLoadSeconds=700 is not a budget tier; "
                                                 r"allowed: 300, 600, 900"):
        model_budget.budget("odd", {**params.load_env("dev"), "ModelLoadSeconds": "700"})


@pytest.mark.parametrize("load", model_load.LOAD_TIERS)
def test_the_derived_check_stays_in_the_ecs_bounds_and_covers_the_load(load):
    check = model_load.container_check(load)
    assert check.start_period <= 300 and 5 <= check.interval <= 300 and 3 <= check.retries <= 10
    assert check.gives_up_after >= load + check.interval
    assert check.start_timeout > check.gives_up_after


def test_a_load_beyond_what_ecs_can_wait_for_is_refused():
    with pytest.raises(model_load.BudgetError, match="ModelLoadSeconds=4000"):
        model_load.container_check(4000)
