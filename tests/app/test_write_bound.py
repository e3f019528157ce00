"""A client that opens a stream and never reads cannot hold a concurrency slot (issue 14, item 1).

The client is a raw socket with a small receive buffer that sends one streaming request and
then reads nothing; the Ollama double streams far more than the socket buffers hold. With one
slot and the total timeout at 3 s, a second request must get the slot within the total timeout
plus a second, the double must see the gateway's upstream connection close, the access log
must name what fired (the client write bound or the exchange deadline), and the non-reading
client's connection must be dropped (not left open with a full buffer).

On the code before this change the slot stayed taken for as long as the socket stayed open
(the total timeout fired only inside upstream reads, never while a write blocked): these tests
failed there (see the report of the change that added them).
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.app.harness import AUTH, KEY, figure

pytestmark = pytest.mark.slow

TOTAL = 3.0
# Each double token is one NDJSON line of ~130 bytes: 200k of them are ~26 MB, far beyond any
# socket buffer (the client's is shrunk to 4 KiB, the kernel's loopback buffers are a few MB).
TOKENS = 200_000


def non_reading_client(port: int, path: str, body: dict) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    data = json.dumps(body).encode()
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def access_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("logger") == "gateway.access":
            lines.append(record)
    return lines


def connection_reset(sock: socket.socket, timeout: float = 3.0) -> bool:
    """The gateway dropped the connection (a reset), rather than leaving it open until the
    client reads what is buffered for it (a plain close waits for that, which a client that
    never reads never allows; reading here would drain it and end in a clean EOF)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


@pytest.mark.parametrize(("path", "body", "write_bound", "reason"), [
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}, 1.0,
     "client_write_timeout"),
    ("/v1/chat/completions",
     {"messages": [{"role": "user", "content": "hi"}], "stream": True}, 1.0,
     "client_write_timeout"),
    # The write bound out of reach: the exchange deadline (the total timeout) ends it.
    ("/api/generate", {"prompt": "hi"}, 60.0, "exchange_deadline"),
])
def test_a_client_that_never_reads_loses_its_slot(start, double, capfd, path, body,
                                                   write_bound, reason):
    double.set(tokens=TOKENS)
    server, app = start(max_concurrency=1, queue_timeout_seconds=0.2, max_output_tokens=TOKENS,
                        upstream_total_timeout_seconds=TOTAL,
                        client_write_timeout_seconds=write_bound)
    stuck = non_reading_client(server.port, path, {**body, "max_tokens": TOKENS})
    began = time.monotonic()
    try:
        # The slot is taken once the double has the request.
        assert double.wait_for(lambda: double.requests_to(path), 5), "request never arrived"
        got_slot = None
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
            while time.monotonic() - began < TOTAL + 3:  # bounded
                # Embeddings take a slot too, and their route is not the stuck one.
                answer = http.post("/api/embed", json={"input": "x"})
                if answer.status_code == 200:
                    got_slot = time.monotonic() - began
                    break
                assert answer.status_code == 429, answer.text
                time.sleep(0.05)
        assert got_slot is not None and got_slot <= TOTAL + 1.0, (
            f"the slot was not freed within {TOTAL + 1} s (got it after {got_slot})")
        figure(f"client never reads ({path}, write bound {write_bound:g} s, total {TOTAL:g} s) "
               "-> slot free", f"{got_slot * 1000:.0f} ms, reason {reason}")
        first = double.requests_to(path)[0]
        assert double.wait_for(lambda: first.outcome == "client_gone", 2), (
            f"the double did not see the upstream request close: {first.outcome}")
        assert first.tokens_sent < TOKENS
        assert connection_reset(stuck), "the non-reading client's connection was not dropped"
    finally:
        stuck.close()
    assert app.state.gateway.limiter.active == 0
    server.stop()
    out, err = capfd.readouterr()
    lines = [line for line in access_lines(out) if line["route"] == path]
    assert [line["reason"] for line in lines] == [reason], lines
    assert "ASGI callable" not in err, "uvicorn saw the connection drop as an app error"
