"""Pure ASGI middleware: auth, route allowlist, body limit, request id, headers, last-resort 500."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from app.factory import RouteTable, create_app
from app.middleware import key_id
from tests.app.harness import AUTH, KEY, OTHER_KEY, ServerThread, gateway_settings

UNUSED_UPSTREAM = "http://127.0.0.1:9"
AUTH_LIST = [(b"authorization", f"Bearer {KEY}".encode())]
PUBLIC = {"/healthz", "/readyz"}
EXPECTED_ROUTES = {
    ("/healthz", "GET"), ("/readyz", "GET"),
    ("/api/chat", "POST"), ("/api/generate", "POST"), ("/api/embed", "POST"),
    ("/api/tags", "GET"), ("/api/version", "GET"),
    ("/api/embeddings", "POST"), ("/api/show", "POST"), ("/api/ps", "GET"),
    ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"), ("/v1/embeddings", "POST"),
    ("/v1/models", "GET"), ("/v1/models/{model:path}", "GET"),
}
MANAGEMENT_PATHS = [
    "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete",
    "/api/blobs/sha256:29fdb92e57cf0827ded04ae6461b5931d01fa595843f55d36f5b275a52087dd2",
    "/api/blobs", "/api/pull/", "/API/PULL", "/api//pull", "/api/chat/../pull",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@pytest.fixture
def app():
    return create_app(gateway_settings(UNUSED_UPSTREAM, max_body_bytes=1000))


@pytest.fixture
def inproc(app, in_process):
    return in_process(app)


def routes_of(app) -> set[tuple[str, str]]:
    pairs = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or ():
            if method != "HEAD":
                pairs.add((route.path, method))
    return pairs


def test_route_table_is_exactly_the_allowlist(app):
    assert routes_of(app) == EXPECTED_ROUTES


def test_every_non_health_route_in_the_table_requires_a_key(app, inproc):
    checked = 0
    for path, method in routes_of(app):
        if path in PUBLIC:
            continue
        response = inproc.request(method, path, json={"model": "llama3.2:1b"})
        assert response.status_code == 401, (method, path)
        checked += 1
    assert checked == len(EXPECTED_ROUTES) - len(PUBLIC)


def test_health_routes_need_no_key(inproc):
    assert inproc.get("/healthz").status_code == 200
    assert inproc.get("/readyz").status_code == 503  # upstream unreachable, but not 401


def test_health_routes_answer_head_without_a_body(inproc):
    for path, status in (("/healthz", 200), ("/readyz", 503)):
        response = inproc.request("HEAD", path)
        assert response.status_code == status, path
        assert response.content == b""


def test_the_route_with_a_parameter_is_protected_and_logged_by_its_template(app, inproc):
    assert inproc.get("/v1/models/llama3.2:1b").status_code == 401
    assert inproc.get("/v1/models/library/llama3.2:1b").status_code == 401
    routes = RouteTable(app, frozenset())
    assert routes.name("/v1/models/x:y") == "/v1/models/{model}"
    assert routes.name("/v1/nothing") is None


class CountingReceive:
    """An ASGI receive that counts how often the app asked for the body."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> dict:
        self.calls += 1
        return {"type": "http.request", "body": b"x" * 10, "more_body": True}


@pytest.mark.parametrize(("method", "path", "headers"), [
    ("POST", "/api/chat", []),  # protected, no key
    ("POST", "/api/nothing-here", AUTH_LIST),
    ("POST", "/healthz", AUTH_LIST),  # public
    ("POST", "/api/pull", AUTH_LIST),  # management: not routed
])
def test_no_body_is_read_before_auth_or_on_unknown_and_public_paths(app, method, path, headers):
    receive = CountingReceive()
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("t", 80),
             "client": ("c", 1), "http_version": "1.1",
             "headers": [(b"content-length", b"100000000"), *headers]}
    asyncio.run(app(scope, receive, send))
    assert receive.calls == 0, "the body was read"
    assert sent[0]["status"] in {401, 404, 405}


@pytest.mark.slow
def test_a_body_that_does_not_arrive_in_time_is_408(start):
    server, _ = start(request_body_timeout_seconds=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
                     + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        head = _read_status(sock, timeout=5)
        elapsed = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 408"), head[:100]
    assert b"connection: close" in head.lower()
    assert 0.4 < elapsed < 2


def test_a_route_added_later_is_protected_too(app, inproc):
    @app.get("/api/added-later")
    async def added() -> dict:
        return {"ok": True}

    assert inproc.get("/api/added-later").status_code == 401
    assert inproc.get("/api/added-later", headers=AUTH).status_code == 200


@pytest.mark.parametrize("header", [
    None,
    f"Bearer {'x' * len(KEY)}",  # wrong, same length
    f"Bearer {KEY[:-1]}",  # shorter (a prefix)
    f"Bearer {KEY}x",  # longer
    f"Bearer {KEY[:-1]}{chr(ord(KEY[-1]) + 1)}",  # last character off
    "Bearer ",  # empty
    "Bearer",
    "",
    f"Basic {KEY}",
    f"Token {KEY}",
    KEY,
    f"Bearer {KEY},{OTHER_KEY}",
], ids=lambda h: "missing" if h is None else re.sub(r"[^a-z]", "_", h.lower())[:30] or "empty")
@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/api/tags"])
def test_bad_credentials_get_401_without_detail(inproc, header, path):
    headers = {} if header is None else {"Authorization": header}
    method = "GET" if path == "/api/tags" else "POST"
    response = inproc.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    if path.startswith("/v1/"):
        assert body["error"]["message"] == "unauthorized"
        assert body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"] == "unauthorized"
    assert KEY not in response.text


@pytest.mark.parametrize("query", ["key", "api_key", "token", "access_token", "authorization"])
def test_keys_in_the_query_string_are_ignored(inproc, query):
    response = inproc.get(f"/api/tags?{query}={KEY}")
    assert response.status_code == 401
    response = inproc.get(f"/api/tags?{query}=Bearer%20{KEY}")
    assert response.status_code == 401


def test_two_authorization_headers_are_refused(inproc):
    response = inproc.get("/api/tags", headers=[("Authorization", f"Bearer {KEY}"),
                                                 ("Authorization", f"Bearer {KEY}")])
    assert response.status_code == 401


def test_both_rotation_keys_work_and_scheme_is_case_insensitive(inproc):
    for header in (f"Bearer {KEY}", f"Bearer {OTHER_KEY}", f"bearer {KEY}", f"BEARER  {KEY} "):
        response = inproc.get("/api/tags", headers={"Authorization": header})
        assert response.status_code == 503, header  # past auth: the upstream is unreachable


def test_key_id_is_a_short_hash_not_the_key():
    ident = key_id(KEY)
    assert len(ident) == 12 and KEY not in ident and re.fullmatch(r"[0-9a-f]{12}", ident)
    assert key_id(OTHER_KEY) != ident


@pytest.mark.parametrize("path", MANAGEMENT_PATHS)
def test_management_paths_are_404_for_every_method(inproc, path):
    for method in METHODS:
        for headers in ({}, AUTH):
            response = inproc.request(method, path, headers=headers, json={"model": "x"})
            assert response.status_code == 404, (method, path, bool(headers))
            if method != "HEAD":
                error = response.json()["error"]
                assert (error["message"] if path.startswith("/v1/") else error) == "not found"


def test_wrong_method_on_a_known_route(inproc):
    assert inproc.get("/api/chat").status_code == 401
    response = inproc.get("/api/chat", headers=AUTH)
    assert response.status_code == 405
    assert response.json()["error"] == "method not allowed"


def test_body_over_the_limit_is_413_from_content_length(inproc):
    response = inproc.post("/api/chat", headers=AUTH, content=b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error"] == "request body larger than 1000 bytes"
    assert response.headers["connection"] == "close"
    openai = inproc.post("/v1/embeddings", headers=AUTH, content=b"x" * 5000)
    assert openai.status_code == 413 and openai.json()["error"]["code"] == "request_too_large"


def test_body_at_the_limit_is_read(inproc):
    response = inproc.post("/api/chat", headers=AUTH, content=b" " * 1000)
    assert response.status_code == 400  # read and parsed (all blanks): not JSON


def test_big_unauthenticated_body_is_401_not_413(inproc):
    assert inproc.post("/api/chat", content=b"x" * 5000).status_code == 401


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _read_status(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return data


@pytest.mark.slow
def test_chunked_body_without_content_length_is_cut_at_the_limit(app):
    server = ServerThread(app).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
                         + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            sock.sendall(_chunk(b"[" + b"1," * 300))  # 601 bytes: under the limit
            sock.sendall(_chunk(b"1," * 300))  # 1201 bytes: over it; the body never ends
            started = time.monotonic()
            head = _read_status(sock, timeout=5)
            elapsed = time.monotonic() - started
        assert head.startswith(b"HTTP/1.1 413"), head[:100]
        assert elapsed < 2  # answered while the body was still open, not at a timeout
    finally:
        server.stop()


def test_request_id_is_accepted_when_safe_and_replaced_otherwise(inproc):
    ok = inproc.get("/healthz", headers={"X-Request-ID": "abc-123._:XYZ"})
    assert ok.headers["x-request-id"] == "abc-123._:XYZ"
    for bad in ("a" * 129, "has space", "semi;colon", "<script>", "-leading-dash"):
        response = inproc.get("/healthz", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), bad
    generated = inproc.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_request_id_and_security_headers_on_every_kind_of_response(inproc):
    responses = [
        inproc.get("/healthz"),
        inproc.get("/api/tags"),  # 401
        inproc.get("/api/pull", headers=AUTH),  # 404
        inproc.post("/api/chat", headers=AUTH, content=b"x" * 2000),  # 413
        inproc.post("/api/chat", headers=AUTH, content=b"{"),  # 400
        inproc.get("/api/tags", headers=AUTH),  # 503 from the upstream
    ]
    assert [r.status_code for r in responses] == [200, 401, 404, 413, 400, 503]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-request-id"] == response.json()["request_id"] \
            if response.status_code >= 400 and "request_id" in response.json() else True
        assert "server" not in response.headers


def test_error_body_carries_the_request_id(inproc):
    response = inproc.get("/api/tags", headers={"X-Request-ID": "trace-1"})
    assert response.json()["request_id"] == "trace-1"
    response = inproc.get("/v1/models", headers={"X-Request-ID": "trace-2"})
    assert response.json()["error"]["request_id"] == "trace-2"


def test_unexpected_exception_is_a_500_in_the_route_shape_without_internals(app, inproc):
    @app.post("/v1/boom")
    async def boom() -> dict:
        raise RuntimeError("secret detail at /srv/app/internal.py")

    @app.post("/api/boom")
    async def boom_ollama() -> dict:
        raise RuntimeError("secret detail at /srv/app/internal.py")

    openai = inproc.post("/v1/boom", headers=AUTH)
    assert openai.status_code == 500
    assert openai.json()["error"]["message"] == "internal error"
    ollama = inproc.post("/api/boom", headers=AUTH)
    assert ollama.status_code == 500 and ollama.json()["error"] == "internal error"
    for response in (openai, ollama):
        assert "secret" not in response.text and "/srv/" not in response.text
        assert "Traceback" not in response.text


@pytest.mark.slow
def test_real_server_sends_no_server_header(gateway):
    response = httpx.get(gateway.url + "/healthz")
    assert response.status_code == 200
    assert "server" not in response.headers
    assert json.loads(response.text) == {"status": "ok"}
