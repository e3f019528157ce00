"""Fixtures of the deploy-tool tests: stubbed clients that must be used up, fake downloads."""

from __future__ import annotations

import io

import pytest
from botocore.stub import Stubber

from tests.tools.deploy.stubs import client
from tools.deploy import images


@pytest.fixture
def stubs():
    """name -> (client, Stubber); every stubber must be used up by the end of the test."""
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            c = client(name)
            stubber = Stubber(c)
            stubber.activate()
            made[name] = (c, stubber)
        return made[name]

    yield get
    for _, stubber in made.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


@pytest.fixture
def downloads(monkeypatch):
    urls: dict[str, bytes] = {}

    def urlopen(url, timeout=None):
        return io.BytesIO(urls[url])

    monkeypatch.setattr(images.urllib.request, "urlopen", urlopen)
    return urls
