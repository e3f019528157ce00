"""Shared by the security tests: the environments and their renderings (cached per session)."""

from __future__ import annotations

from functools import cache

from tools import params, render

ENVIRONMENTS = tuple(params.environments())


@cache
def rendering(env: str) -> render.Rendered:
    return render.render_environment(env)
