"""What the proxying routers share: parse, apply the policy, hand over to a ProxyCall.

Adding a proxied route is the route (one of these helpers) plus its request/response schema.
"""

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


async def _prepared(
    request: Request, prepare: Callable[[Gateway], Callable[[dict[str, Any]], Prepared]]
) -> Prepared:
    data = parse_json_object(await request.body())
    prepared = prepare(gateway_of(request))(data)
    info = info_of(request.scope)
    info.model = prepared.model
    info.stream = prepared.stream
    return prepared


async def generation(
    request: Request, path: str, prepare: Callable[[Gateway], Callable[[dict[str, Any]], Prepared]]
) -> ProxyCall:
    """A request that makes Ollama compute (chat, generate, embeddings): it takes a slot."""
    prepared = await _prepared(request, prepare)
    return ProxyCall(gateway_of(request), "POST", path, prepared.payload,
                     stream=prepared.stream, generation=True)


async def model_question(
    request: Request, path: str, prepare: Callable[[Gateway], Callable[[dict[str, Any]], Prepared]],
    transform: Callable[[Prepared], Callable[[Any], Any]],
) -> ProxyCall:
    """A quick POST about one allowed model (/api/show): no slot, the answer transformed."""
    prepared = await _prepared(request, prepare)
    return ProxyCall(gateway_of(request), "POST", path, prepared.payload,
                     transform=transform(prepared))


def listing(request: Request, path: str, transform: Callable[[Any], Any] | None) -> ProxyCall:
    return ProxyCall(gateway_of(request), "GET", path, transform=transform)


def allowed_listing(request: Request, path: str, field: str, keys: tuple[str, ...],
                    envelope: dict[str, Any] | None = None) -> ProxyCall:
    """A listing of models (`field` of the answer), cut down to the allowed ones.

    keys: where an entry names its model, first match wins. envelope: the answer's other
    fields, fixed (None: Ollama's other fields pass through).
    """
    policy = gateway_of(request).policy

    def transform(data: Any) -> Any:
        entries = data.get(field) if isinstance(data, dict) else None
        base = envelope if envelope is not None else (data if isinstance(data, dict) else {})
        return {**base, field: policy.allowed_entries(entries, *keys)}

    return listing(request, path, transform)
