"""A fake XMPP server for the component side (XEP-0114), to which the router connects.

The tests that use it (test_faults.py) play the server: they accept the router's connection, send
the stream header and accept the handshake, then send whatever bytes they like, including bytes
no real server would send, and look at what the router sends back. Everything is on 127.0.0.1,
bounded in time, and closed by the test that opened it.
"""

from __future__ import annotations

import hashlib
import queue
import socket
import threading
import time
import xml.etree.ElementTree as ET
from typing import Callable, Optional

from harness import HarnessError, free_port

STREAM_NS = "http://etherx.jabber.org/streams"
COMPONENT_NS = "jabber:component:accept"
STREAM_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def stream_header(stream_id: str, component: str, prolog: str = "") -> str:
    """The server's answer to the router's stream header; `prolog` goes before the root."""
    return (f"<?xml version='1.0'?>{prolog}<stream:stream xmlns:stream='{STREAM_NS}' "
            f"xmlns='{COMPONENT_NS}' from='{component}' id='{stream_id}'>")


def stanza_error_condition(element: ET.Element) -> str:
    """The stanza error condition of an error stanza, or ''."""
    error = element.find(tag(COMPONENT_NS, "error"))
    if error is None:
        return ""
    for child in error:
        if child.tag.startswith(f"{{{STANZAS_NS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return ""


def stream_error_condition(element: ET.Element) -> str:
    for child in element:
        if child.tag.startswith(f"{{{STREAM_ERRORS_NS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return ""


class FakeConnection:
    """One accepted connection from the router. A reader thread parses what the router sends:
    the stream header, then each child of the stream root as an ElementTree element."""

    def __init__(self, sock: socket.socket, number: int):
        self.sock = sock
        self.number = number
        self.stream_id = f"fake-{number}-{time.monotonic_ns()}"
        self.header: Optional[ET.Element] = None
        self.header_seen = threading.Event()
        self.elements: "queue.Queue[ET.Element]" = queue.Queue()
        self.received: list[ET.Element] = []
        self.stream_closed = threading.Event()   # the router sent </stream:stream>
        self.eof = threading.Event()             # the router closed the TCP connection
        self.parse_error: Optional[str] = None
        self.raw = bytearray()
        # Cleared to stop reading from the socket, as a server that does not keep up.
        self.reading = threading.Event()
        self.reading.set()
        # False: parsed elements go to the queue only, not to `received` too (for floods).
        self.keep_received = True
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"fake-conn-{number}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        depth = 0
        root = None
        try:
            while True:
                self.reading.wait()
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                self.raw.extend(data)
                if len(self.raw) > 1 << 20:
                    del self.raw[:len(self.raw) - (1 << 19)]
                try:
                    parser.feed(data)
                    for event, element in parser.read_events():
                        if event == "start":
                            depth += 1
                            if depth == 1:
                                root = element
                                self.header = element
                                self.header_seen.set()
                        else:
                            depth -= 1
                            if depth == 0:
                                self.stream_closed.set()
                            elif depth == 1:
                                if self.keep_received:
                                    with self._lock:
                                        self.received.append(element)
                                self.elements.put(element)
                                if root is not None:
                                    root.remove(element)
                except ET.ParseError as error:
                    self.parse_error = f"{error}; bytes so far: {bytes(self.raw[-400:])!r}"
                    break
        finally:
            self.eof.set()

    # Sending

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def try_send(self, data: bytes | str) -> bool:
        """Sends if the router has not closed yet; False when the connection is gone."""
        try:
            self.send(data)
            return True
        except OSError:
            return False

    # Handshake

    def open_stream(self, component: str, prolog: str = "", timeout: float = 10.0) -> None:
        """Waits for the router's stream header and answers with ours (`prolog` before the root)."""
        if not self.header_seen.wait(timeout):
            raise HarnessError(f"the router sent no stream header within {timeout}s; got {bytes(self.raw)!r}")
        assert self.header is not None
        if self.header.get("to") != component:
            raise HarnessError(f"the router's stream header is addressed to {self.header.get('to')!r}")
        self.send(stream_header(self.stream_id, component, prolog))

    def accept_handshake(self, secret: str, timeout: float = 10.0) -> None:
        """Waits for the handshake, checks the digest (SHA-1 of id and secret) and accepts it."""
        handshake = self.next(lambda e: e.tag == tag(COMPONENT_NS, "handshake"), timeout)
        expected = hashlib.sha1((self.stream_id + secret).encode("utf-8")).hexdigest()
        if (handshake.text or "") != expected:
            raise HarnessError(f"handshake digest {handshake.text!r}, expected {expected!r}")
        self.send("<handshake/>")

    # Receiving

    def next(self, predicate: Callable[[ET.Element], bool], timeout: float = 5.0,
             what: str = "a matching element") -> ET.Element:
        """The next element from the router that matches `predicate`; others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"connection {self.number}: no {what} within {timeout}s; "
                                   f"received: {[ET.tostring(e, encoding='unicode')[:200] for e in self.received[-5:]]}"
                                   f"{'; parse error: ' + self.parse_error if self.parse_error else ''}")
            try:
                element = self.elements.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                if self.eof.is_set() and self.elements.empty():
                    raise HarnessError(f"connection {self.number} closed while waiting for {what}; "
                                       f"last bytes: {bytes(self.raw[-300:])!r}")
                continue
            if predicate(element):
                return element

    def drain(self, seconds: float) -> list[ET.Element]:
        """Everything the router sends within `seconds`."""
        out = []
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            try:
                out.append(self.elements.get(timeout=remaining))
            except queue.Empty:
                return out

    def wait_closed(self, timeout: float = 5.0) -> bool:
        return self.eof.wait(timeout)

    def close(self) -> None:
        self.reading.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._reader.join(timeout=2)


class FakeComponentServer:
    """Listens on a free loopback port; each connection the router makes is queued for the test."""

    def __init__(self):
        self.port = free_port()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        self.connections: "queue.Queue[FakeConnection]" = queue.Queue()
        self.all: list[FakeConnection] = []
        self._closing = False
        self._acceptor = threading.Thread(target=self._accept, name="fake-server", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        number = 0
        while not self._closing:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            number += 1
            connection = FakeConnection(sock, number)
            self.all.append(connection)
            self.connections.put(connection)

    def accept(self, timeout: float = 10.0) -> FakeConnection:
        try:
            return self.connections.get(timeout=timeout)
        except queue.Empty:
            raise HarnessError(f"the router did not connect to the fake server within {timeout}s")

    def close(self) -> None:
        self._closing = True
        try:
            # shutdown wakes the thread blocked in accept(); close alone would not.
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass
        for connection in self.all:
            connection.close()
        self._acceptor.join(timeout=2)
