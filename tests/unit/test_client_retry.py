"""The client's retry rule (``Client._retry_delay``) against real local HTTP servers: a wait outlasts a server that
refuses connections then answers, waits out 429 / 502 / 504, gives up after ``wait_retry_s`` naming the request;
a submission that may have reached the server is never sent twice."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from latfarm.services.client import Client, LatfarmError

BATCH = "0123abcd" * 4
DONE = {"id": BATCH, "queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0, "items": []}
Answer = tuple[int, object, dict[str, str]]  # status, JSON body, headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(answer: Callable[[str, str], Answer | None], port: int = 0) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server whose every request gets ``answer(method, path)`` (None: the connection is closed
    unanswered); its URL and the requests it got."""
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            calls.append(f"{self.command} {self.path}")
            answered = answer(self.command, self.path)
            if answered is None:
                self.close_connection = True
                return
            status, body, headers = answered
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = handle_one  # noqa: N815

        def log_message(self, *_) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", calls
    finally:
        httpd.shutdown()
        httpd.server_close()


def done(*_: str) -> Answer:
    return 200, DONE, {}


def test_a_wait_outlasts_a_server_that_refuses_connections_then_answers():
    port, told = free_port(), []
    started = threading.Event()

    def start_late() -> None:
        time.sleep(1.0)  # connections are refused meanwhile
        with serving(done, port):
            started.set()
            time.sleep(5)

    client = Client(f"http://127.0.0.1:{port}", "k", backoff_s=0.05, wait_retry_s=30, notify=told.append)
    threading.Thread(target=start_late, daemon=True).start()
    assert client.wait(BATCH, poll_s=0.05)["done"] == 1
    assert started.is_set()
    assert len(told) == 1, told  # said once, however many tries failed
    assert told[0].startswith(f"http://127.0.0.1:{port} is unreachable or busy (GET /v1/jobs/{BATCH}: ConnectError")
    assert told[0].endswith("retrying for up to 30 s")


def test_a_wait_waits_out_throttling_and_gateway_errors():
    throttled: Answer = (429, {"message": "throttled"}, {"Retry-After": "1"})
    answers: list[Answer] = [throttled, throttled, (502, {}, {}), (504, {}, {})]

    def flaky(*_: str) -> Answer:
        return answers.pop(0) if answers else done()

    with serving(flaky) as (url, calls):
        with pytest.raises(LatfarmError) as err:  # outside a wait a 429 is an answer: its message, at once
            Client(url, "k", backoff_s=0.01).job(BATCH)
        assert (err.value.status, err.value.message, len(calls)) == (429, "throttled", 1)
        begun = time.monotonic()
        assert Client(url, "k", backoff_s=0.01).wait(BATCH, poll_s=0.01)["done"] == 1
        assert time.monotonic() - begun >= 1.0  # Retry-After waited out
        assert len(calls) == 6  # the 429 above, then 429, 502, 504, the poll, the batch with its items


def test_a_wait_gives_up_after_wait_retry_s_without_an_answer():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    begun = time.monotonic()
    with pytest.raises(LatfarmError) as err:
        Client(url, "k", backoff_s=0.1, wait_retry_s=1.0).wait(BATCH, poll_s=0.05)
    assert 0.5 <= time.monotonic() - begun < 5
    assert err.value.code == "unavailable" and err.value.status == 0
    assert err.value.message.startswith(f"{url} unreachable or busy for 1 s (GET /v1/jobs/{BATCH}: ConnectError")


@pytest.mark.parametrize("answer", [(502, {}, {}), (504, {}, {}), None], ids=["502", "504", "closed"])
def test_a_submission_that_may_have_reached_the_server_is_sent_once(answer):
    """A gateway's 502 / 504, or a connection closed unanswered, may follow jobs queued: never sent again."""
    with serving(lambda *_: answer) as (url, calls):
        with pytest.raises(LatfarmError):
            Client(url, "k", backoff_s=0.01).submit("dev", [0])
        assert calls == ["POST /v1/jobs"]


def test_a_submission_refused_before_any_work_is_sent_again():
    answers: list[Answer] = [(503, {"message": "starting"}, {})]

    def refused_once(*_: str) -> Answer:
        return answers.pop(0) if answers else (201, {"id": BATCH}, {})

    with serving(refused_once) as (url, calls):
        assert Client(url, "k", backoff_s=0.01).submit("dev", [0]) == BATCH
        assert calls == ["POST /v1/jobs"] * 2


def test_a_retry_after_beyond_the_patience_gets_a_last_try_as_it_ends():
    with serving(lambda *_: (429, {"message": "throttled"}, {"Retry-After": "60"})) as (url, calls):
        begun = time.monotonic()
        with pytest.raises(LatfarmError) as err:
            Client(url, "k", wait_retry_s=1.0).wait(BATCH, poll_s=0.05)
        assert 0.9 <= time.monotonic() - begun < 5 and len(calls) == 2
        assert err.value.message == f"{url} unreachable or busy for 1 s (GET /v1/jobs/{BATCH}: HTTP 429)"
