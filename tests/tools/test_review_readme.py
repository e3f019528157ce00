"""The README's sample review is the report the tool gives today for the sample change."""

from __future__ import annotations

from tools.review import sample


def test_readme_review_sample_is_current():
    readme = sample.README.read_text()
    assert sample.replace_section(readme, sample.readme_section()) == readme, (
        "README.md's review sample is stale: python -m tools.review.sample --write")


def test_the_sample_shows_findings_of_both_kinds_of_change():
    section = sample.readme_section()
    assert "- **prod** · `load_balancer` · replace:" in section  # the params-only change
    assert "- **dev** · `service` · replace: ECS::Service Service is replaced" in section
