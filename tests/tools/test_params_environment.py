"""params/<env>.toml: the deploy tool's view of an environment, beside (never inside) the params."""

from __future__ import annotations

import pytest

from tools import params


@pytest.mark.parametrize("text, production, error", [
    (None, False, None),  # no companion file: an ordinary environment
    ("production = true\n", True, None),
    ("production = false\n", False, None),
    ("production = 'yes'\n", None, "production must be true or false"),
    ("termination_protection = true\n", None, "unknown key 'termination_protection'; allowed: production"),
    ("production = \n", None, "not valid TOML"),
])
def test_companion_file(tmp_path, text, production, error):
    (tmp_path / "staging.json").write_text('[\n  "EnvironmentName=staging"\n]\n')
    if text is not None:
        (tmp_path / "staging.toml").write_text(text)
    if error:
        with pytest.raises(params.ParamsError, match=error) as raised:
            params.environment("staging", tmp_path)
        assert "staging.toml" in str(raised.value)
    else:
        assert params.environment("staging", tmp_path).production is production


def test_prod_counts_as_production_and_dev_does_not():
    assert params.environment("prod").production and not params.environment("dev").production


def test_companion_files_are_not_environments():
    assert params.environments() == sorted(p.stem for p in params.PARAMS_DIR.glob("*.json"))
    assert all(params.environment(env).name == env for env in params.environments())
