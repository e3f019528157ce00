"""tests/images/taskdef.py without an engine: every key of the gateway's container definition
has an engine mapping or a written reason, and the tmpfs entries become Docker's options."""

from __future__ import annotations

import pytest

from tests.images import taskdef
from tests.images.common import task_containers, without_ecs_exec
from tools import params, render


@pytest.mark.parametrize("env", params.environments())
def test_every_key_of_the_gateway_container_has_an_engine_mapping_or_a_reason(env):
    rendered = render.render_environment(env).templates["service.json"]["Resources"]
    gateway = next(c for c in rendered["TaskDefinition"]["Properties"]["ContainerDefinitions"]
                   if c["Name"] == "gateway")
    body = taskdef.create_request(gateway, "image", {}, "double", [])  # raises on an unknown key
    assert body["HostConfig"]["ReadonlyRootfs"] is gateway["ReadonlyRootFilesystem"]
    assert set(body["HostConfig"]["Tmpfs"]) == {
        t["ContainerPath"] for t in gateway["LinuxParameters"]["Tmpfs"]}
    with pytest.raises(AssertionError, match=r"no engine mapping for \['PseudoTerminal'\]"):
        taskdef.create_request({**gateway, "PseudoTerminal": True}, "image", {}, "double", [])
    with pytest.raises(AssertionError, match="LinuxParameters.Devices"):
        taskdef.create_request({**gateway, "LinuxParameters": {"Devices": []}}, "image", {},
                               "double", [])


def test_a_tmpfs_entry_becomes_dockers_option_string_with_its_size_in_mib():
    for entry in without_ecs_exec(task_containers()["gateway"]["LinuxParameters"]["Tmpfs"]):
        options = taskdef.tmpfs_options(entry).split(",")
        assert options == [*entry["MountOptions"], f"size={entry['Size']}m"]
