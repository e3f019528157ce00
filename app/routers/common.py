"""What the proxying routers share: parse, apply the policy, hand over to a ProxyCall."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from app.context import info_of
from app.policy import Prepared, parse_json_object
from app.proxy import ProxyCall
from app.runtime import Gateway


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


async def generation(
    request: Request, path: str, prepare: Callable[[Gateway], Callable[[dict[str, Any]], Prepared]]
) -> ProxyCall:
    gateway = gateway_of(request)
    info = info_of(request.scope)
    data = parse_json_object(await request.body())
    prepared = prepare(gateway)(data)
    info.model = prepared.model
    info.stream = prepared.stream
    return ProxyCall(gateway, "POST", path, prepared.payload, stream=prepared.stream,
                     generation=True)


def listing(request: Request, path: str, transform: Callable[[Any], Any] | None) -> ProxyCall:
    return ProxyCall(gateway_of(request), "GET", path, transform=transform)
