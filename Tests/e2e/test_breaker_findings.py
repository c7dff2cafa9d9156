"""Bugs the breaker found in the router's sockets, each with the smallest input that showed it.

- A server that takes the TCP connection but never sends a stream header held the route in
  `handshaking` for ever: no timeout, no reconnect.
- The control socket and the metrics listener share one serial queue. A control client that sent
  requests without reading the answers blocked that queue (two seconds per answer, for each of its
  requests), and idle connections were kept for ever, until the process ran out of descriptors.

The route talks to the fake server of fake_server.py; no Prosody is needed. The Swift half of
these findings is in Tests/RouterTests/BreakerFindingsTests.swift.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest

from fake_server import FakeComponentServer, FakeConnection
from harness import RouterProcess, free_port, router_binary, wait_for_port, yaml_string

COMPONENT = "proxy.example.org"
TARGET = "service@example.org"
SECRET = "breaker secret"
# RequestServer's limits, as the fix set them.
MAX_CLIENTS = 32
IDLE_TIMEOUT = 10.0
# ComponentRoute.connectTimeout: how long a connection may take to authenticate.
HANDSHAKE_TIMEOUT = 10.0


class BreakerSetup:
    """One router on a fake server, with a control socket (and a metrics port if asked)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.server = FakeComponentServer()
        # Unix socket paths are limited to 107 bytes, so the socket lives in a short folder.
        self.folder = Path(tempfile.mkdtemp(prefix="cpr-b-"))
        self.control_socket = self.folder / "control.sock"
        self.metrics_port: Optional[int] = None
        self.router: Optional[RouterProcess] = None

    def start(self, metrics: bool = False) -> RouterProcess:
        self.metrics_port = free_port() if metrics else None
        listen = f'metrics:\n  listen: "127.0.0.1:{self.metrics_port}"\n' if metrics else ""
        config = f"""log_level: debug
control:
  socket: {yaml_string(str(self.control_socket))}
{listen}routes:
  - component: {COMPONENT}
    server:
      host: 127.0.0.1
      port: {self.server.port}
    secret: {yaml_string(SECRET)}
    target: {TARGET}
    request_timeout: 5s
    reconnect:
      initial: 100ms
      max: 500ms
"""
        self.router = RouterProcess(self.workdir, config, name="breaker-router")
        self.router.start()
        return self.router

    def establish(self, connection: Optional[FakeConnection] = None) -> FakeConnection:
        """Accepts the router's connection and completes the handshake."""
        assert self.router is not None
        since = self.router.mark()
        conn = connection or self.server.accept()
        conn.open_stream(COMPONENT)
        conn.accept_handshake(SECRET)
        self.router.wait_for_log(r'msg="component authenticated"', since=since)
        return conn

    def wait_listening(self) -> None:
        """Waits for the control socket (and the metrics port) to accept connections."""
        assert self.router is not None
        self.router.wait_for_log(r'msg="router started"')
        if self.metrics_port is not None:
            wait_for_port(self.metrics_port, 10, self.router.process)

    def close(self) -> list[str]:
        problems = []
        if self.router is not None:
            if self.router.running:
                code = self.router.stop()
                if code != 0:
                    problems.append(f"the router exited with {code} on SIGTERM; tail:\n{self.router.tail()}")
            elif self.router.process is not None:
                problems.append(f"the router died with {self.router.process.returncode}:\n{self.router.tail()}")
        self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        return problems


@pytest.fixture
def breaker(tmp_path):
    if not router_binary().exists():
        pytest.fail(f"{router_binary()} does not exist; run `swift build` first (or set ROUTERCTL)")
    setup = BreakerSetup(tmp_path)
    yield setup
    problems = setup.close()
    if problems:
        pytest.fail("\n".join(problems))


def routerctl_status(socket_path: Path, timeout: float = 10.0) -> tuple[float, subprocess.CompletedProcess]:
    """Runs `routerctl status --json`; returns how long it took and what it printed."""
    started = time.monotonic()
    try:
        result = subprocess.run([str(router_binary()), "status", "--json", "--socket", str(socket_path)],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"routerctl status did not answer within {timeout}s")
    return time.monotonic() - started, result


def assert_status_answers(setup: BreakerSetup, within: float, when: str) -> None:
    elapsed, result = routerctl_status(setup.control_socket)
    assert result.returncode == 0, f"routerctl status {when}: exit {result.returncode}: {result.stderr.strip()}"
    assert [route["route"] for route in json.loads(result.stdout)["routes"]] == [COMPONENT], result.stdout
    assert elapsed < within, f"routerctl status took {elapsed:.1f}s {when}"


def is_closed(sock: socket.socket) -> bool:
    """True when the peer has closed `sock` (EOF or reset), after whatever it wrote first (a
    connection over the limit reads a `busy` answer, then EOF); does not wait."""
    while True:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            if sock.recv(4096) == b"":
                return True
        except OSError:
            return True


def open_idle(connect, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = connect()
        sockets.append(sock)
    return sockets


def connect_unix(path: Path):
    def connect() -> socket.socket:
        # The listen backlog is 16, and a full backlog fails a non-blocking connect with
        # EAGAIN: try again until the router has accepted what waits.
        deadline = time.monotonic() + 5
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect(str(path))
                return sock
            except BlockingIOError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    return connect


def connect_tcp(port: int):
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    return connect


def wait_all_closed(sockets: list[socket.socket], timeout: float) -> float:
    """Waits until the router has closed every socket; returns when (seconds from now)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(is_closed(sock) for sock in sockets):
            return time.monotonic() - started
        time.sleep(0.2)
    still_open = sum(1 for sock in sockets if not is_closed(sock))
    pytest.fail(f"{still_open} of {len(sockets)} connections still open after {timeout}s")


def test_a_server_that_never_sends_a_stream_header_is_given_up_on_and_the_router_reconnects(breaker):
    router = breaker.start()
    # 1. The router connects and sends its stream header; the server never answers.
    first = breaker.server.accept()
    assert first.header_seen.wait(5), f"the router sent no stream header; got {bytes(first.raw)!r}"
    connected = time.monotonic()
    # 2. Within the handshake timeout (and not much sooner) the router gives up on it and closes it.
    router.wait_for_log(r"no handshake", timeout=HANDSHAKE_TIMEOUT + 5)
    gave_up = time.monotonic() - connected
    assert HANDSHAKE_TIMEOUT - 1.5 <= gave_up <= HANDSHAKE_TIMEOUT + 3, f"gave up after {gave_up:.1f}s"
    assert first.wait_closed(3), "the router did not close the connection it gave up on"
    # 3. It connects again, and that connection serves once the server answers.
    second = breaker.server.accept(timeout=5)
    breaker.establish(second)
    assert router.running


def test_a_control_client_that_never_reads_its_answers_does_not_block_others(breaker):
    breaker.start()
    breaker.establish()
    # 1. A client sends 2000 status requests in one go and reads none of the answers.
    hog = connect_unix(breaker.control_socket)()
    request = (json.dumps({"version": 1, "command": "status", "args": {}}) + "\n").encode()
    try:
        hog.sendall(request * 2000)
    except OSError:
        pass   # the router may drop it before it has sent everything: that is what it should do
    time.sleep(0.5)
    # 2. Another client is answered within a few seconds (a stalled write waits two seconds at most).
    assert_status_answers(breaker, within=5, when="while a client does not read its answers")
    # 3. The client that does not read has been dropped: fewer than its 2000 answers, then EOF.
    answers, deadline = 0, time.monotonic() + 10
    hog.settimeout(1)
    while time.monotonic() < deadline:
        try:
            data = hog.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        answers += data.count(b"\n")
    else:
        pytest.fail(f"the router never closed the client that did not read ({answers} answers so far)")
    hog.close()
    assert answers < 2000, "the router wrote every answer to a client that did not read them"
    assert_status_answers(breaker, within=3, when="after the client that did not read was dropped")


def test_idle_metrics_connections_are_capped_and_dropped_while_routerctl_keeps_answering(breaker):
    breaker.start(metrics=True)
    breaker.establish()
    breaker.wait_listening()
    assert breaker.metrics_port is not None
    # 1. 100 connections to the metrics port that send nothing: at most 32 are kept, the others
    #    are closed at once.
    idle = open_idle(connect_tcp(breaker.metrics_port), 100)
    opened = time.monotonic()
    time.sleep(1.0)
    kept = [sock for sock in idle if not is_closed(sock)]
    assert len(kept) <= MAX_CLIENTS, f"{len(kept)} idle metrics connections kept at once"
    # 2. Meanwhile routerctl status answers at once, again and again.
    while time.monotonic() - opened < IDLE_TIMEOUT - 2:
        assert_status_answers(breaker, within=3, when="while 100 metrics connections sit idle")
        time.sleep(1.0)
    # 3. The kept ones are dropped once idle for the timeout; then a scrape is served.
    closed_after = time.monotonic() - opened + wait_all_closed(idle, IDLE_TIMEOUT + 5)
    assert closed_after >= IDLE_TIMEOUT - 1.5 or not kept, f"idle connections dropped after {closed_after:.1f}s"
    for sock in idle:
        sock.close()
    scrape = connect_tcp(breaker.metrics_port)()
    scrape.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert scrape.recv(65536).startswith(b"HTTP/1.1 200"), "no metrics served after the idle connections left"
    scrape.close()


def test_idle_control_connections_are_capped_and_dropped(breaker):
    breaker.start()
    breaker.establish()
    breaker.wait_listening()
    # 1. 100 connections to the control socket that send nothing: at most 32 are kept, the
    #    others are closed at once.
    idle = open_idle(connect_unix(breaker.control_socket), 100)
    opened = time.monotonic()
    time.sleep(1.0)
    kept = [sock for sock in idle if not is_closed(sock)]
    assert 0 < len(kept) <= MAX_CLIENTS, f"{len(kept)} idle control connections kept at once"
    # 2. The kept ones are dropped once idle for the timeout, and the router answers again.
    closed_after = time.monotonic() - opened + wait_all_closed(kept, IDLE_TIMEOUT + 5)
    assert closed_after >= IDLE_TIMEOUT - 1.5, f"idle connections dropped after {closed_after:.1f}s"
    for sock in idle:
        sock.close()
    assert_status_answers(breaker, within=3, when="after the idle connections were dropped")
    assert breaker.router is not None and breaker.router.running
