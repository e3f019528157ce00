"""The README's sample review is the report the tool gives today for the sample change."""

from __future__ import annotations

from tools.review import sample


def test_the_sample_shows_findings_of_both_kinds_of_change():
    section = sample.readme_section()
    assert "- **prod** · `load_balancer` · replace:" in section  # the params-only change
    assert "- **dev** · `service` · replace: ECS::Service Service is replaced" in section


def test_a_change_that_moves_cost_gets_a_monthly_cost_section_and_one_that_does_not_gets_none():
    from tools import params as params_files
    from tools import render
    from tools.review.rendering import Rendering
    from tools.review.review import EnvironmentReview, cost_section

    def side(values):
        rendered = render.render_environment("prod", values=values)
        return Rendering(templates=rendered.templates, region=rendered.region)

    values = params_files.load_env("prod")
    base = side(values)
    bigger = side({**values, "AsgMinSize": str(int(values["AsgMinSize"]) + 1)})
    moved = cost_section(EnvironmentReview("prod", base, bigger, layers={"cluster.json": {}}))
    assert moved is not None and moved.title == "Monthly cost"
    assert moved.lines[0].startswith("- prod: floor $") and "GPU instances" in moved.lines[0]
    assert cost_section(EnvironmentReview("prod", base, base, layers={"cluster.json": {}})) is None
