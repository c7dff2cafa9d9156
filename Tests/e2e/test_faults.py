"""Faults, overload and hostile input: the router keeps its promise that every request it
accepts gets exactly one answer, that nobody reaches where they do not belong, and that it keeps
running whatever the server, the clients or an attacker do.

Two kinds of setup:
- a fake XMPP server (fake_server.py) playing the component side of XEP-0114, which sends what no
  real server would (broken XML, DTDs, forged replies) and sees exactly what the router sends;
- the real Prosody and slixmpp clients of conftest.py, for chaos and overload.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import pytest

from fake_server import (
    COMPONENT_NS, STREAM_NS, FakeComponentServer, FakeConnection, stanza_error_condition,
    stream_error_condition, tag,
)
from harness import ECHO_NS, HarnessError, RouterProcess, jat_for, router_binary, yaml_string

# --------------------------------------------------------------------------------------------
# Fake server: addresses and configuration

FAKE_COMPONENT = "proxy.example.org"
FAKE_TARGET = "service@example.org"
FAKE_USER = "user@example.org/phone"
FAKE_SECRET = "fake server secret"
IQ = tag(COMPONENT_NS, "iq")
PRESENCE = tag(COMPONENT_NS, "presence")
MESSAGE = tag(COMPONENT_NS, "message")


def route_yaml(port: int, component: str = FAKE_COMPONENT, target: str = FAKE_TARGET,
               secret: str = FAKE_SECRET, request_timeout: str = "5s", encoder: str = "name: base64url",
               extra: str = "") -> str:
    """One route entry of the YAML, for a router talking to the fake server.

    The smallest stanza limit the configuration allows (4 KiB) keeps the endless-stanza attack
    short; reconnects are quick so that each attack is followed by a new connection at once.
    """
    lines = f"""  - component: {component}
    server:
      host: 127.0.0.1
      port: {port}
    secret: {yaml_string(secret)}
    target: {target}
    strategy: round-robin
    encoder:
      {encoder}
    request_timeout: {request_timeout}
    keepalive: 60s
    max_stanza_size: 4KiB
    reconnect:
      initial: 100ms
      max: 500ms
"""
    return lines + "".join(f"    {line}\n" for line in extra.strip("\n").splitlines())


def router_yaml(routes: list[str], control_socket: Path, log_level: str = "debug") -> str:
    return (f"log_level: {log_level}\ncontrol:\n  socket: {yaml_string(str(control_socket))}\n"
            f"routes:\n" + "".join(routes))


class FakeSetup:
    """Routers and fake servers made by one test (or module); all stopped at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.routers: list[RouterProcess] = []
        self.servers: list[FakeComponentServer] = []
        self.folders: list[Path] = []

    def server(self) -> FakeComponentServer:
        server = FakeComponentServer()
        self.servers.append(server)
        return server

    def router(self, routes: list[str], env: Optional[dict[str, str]] = None,
               log_level: str = "debug") -> RouterProcess:
        folder = Path(tempfile.mkdtemp(prefix="cpr-f-"))
        self.folders.append(folder)
        config = router_yaml(routes, folder / "control.sock", log_level)
        router = RouterProcess(self.workdir, config, name=f"fake-router{len(self.routers) + 1}", env=env,
                               log_level=log_level)
        self.routers.append(router)
        router.start()
        return router

    def control_socket(self, router: RouterProcess) -> Path:
        return self.folders[self.routers.index(router)] / "control.sock"

    def close(self) -> list[str]:
        problems = []
        for router in self.routers:
            if router.running:
                code = router.stop()
                if code != 0:
                    problems.append(f"{router.log_path.name} exited with {code}; tail:\n{router.tail()}")
            elif router.process is not None and router.process.returncode not in (0, None):
                problems.append(f"{router.log_path.name} died with {router.process.returncode}:\n"
                                f"{crash_report(router)}")
        for server in self.servers:
            server.close()
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
        return problems


def crash_report(router: RouterProcess) -> str:
    """Why a router process died: the fatal error and the frames in our own sources."""
    lines = router.log_text().splitlines()
    fatal = [line for line in lines if "Fatal error" in line or "Crash" in line]
    frames = [re.sub(r"^\s*\d+ \[ra\]\s*(\[thunk\])?\s*0x[0-9a-f]+ ", "  ", line)
              for line in lines if "/Sources/" in line][:12]
    return "\n".join(fatal[:3] + frames) or router.tail(20)


def assert_alive(router: RouterProcess, when: str) -> None:
    if not router.running:
        pytest.fail(f"the router died {when} (exit {router.process.returncode}):\n{crash_report(router)}")


def _need_router() -> None:
    if not router_binary().exists():
        pytest.fail(f"{router_binary()} does not exist; run `swift build` first (or set ROUTERCTL)")


@pytest.fixture
def fake(tmp_path):
    _need_router()
    setup = FakeSetup(tmp_path)
    yield setup
    problems = setup.close()
    if problems:
        pytest.fail("\n".join(problems))


def establish(server: FakeComponentServer, component: str = FAKE_COMPONENT, resources=("a",),
              secret: str = FAKE_SECRET, connection: Optional[FakeConnection] = None) -> FakeConnection:
    """Accepts the router's next connection, completes the handshake, answers its subscription
    and announces `resources` of the target as available."""
    conn = connection or server.accept()
    conn.open_stream(component)
    conn.accept_handshake(secret)
    conn.next(lambda e: e.tag == PRESENCE and e.get("type") == "subscribe", what="the subscription request")
    conn.send(f"<presence type='subscribed' from='{FAKE_TARGET}' to='{component}'/>")
    announce(conn, resources, component)
    return conn


def announce(conn: FakeConnection, resources, component: str = FAKE_COMPONENT) -> None:
    for resource in resources:
        conn.send(f"<presence from='{FAKE_TARGET}/{resource}' to='{component}'/>")


def send_request(conn: FakeConnection, iq_id: str, sender: str = FAKE_USER, to: str = FAKE_COMPONENT,
                 kind: str = "get", text: str = "hi") -> None:
    conn.send(f"<iq type='{kind}' id='{iq_id}' from='{sender}' to='{to}'>"
              f"<query xmlns='{ECHO_NS}'>{text}</query></iq>")


def forwarded(conn: FakeConnection, iq_id: str, timeout: float = 5.0) -> ET.Element:
    """The router's copy of request `iq_id`, sent to a resource of the target."""
    return conn.next(lambda e: e.tag == IQ and e.get("id") == iq_id and e.get("type") in ("get", "set")
                     and (e.get("to") or "").startswith(FAKE_TARGET + "/"),
                     timeout, what=f"the forwarded request {iq_id}")


def answer_to(conn: FakeConnection, iq_id: str, timeout: float = 5.0) -> ET.Element:
    """The router's answer (result or error) to request `iq_id`, sent back to a requester."""
    return conn.next(lambda e: e.tag == IQ and e.get("id") == iq_id and e.get("type") in ("result", "error")
                     and not (e.get("to") or "").startswith(FAKE_TARGET),
                     timeout, what=f"an answer to {iq_id}")


def reply_from_resource(conn: FakeConnection, request: ET.Element, text: str = "answer",
                        sender: Optional[str] = None, kind: str = "result") -> None:
    """The resource holding `request` answers it (or `sender` pretends to)."""
    conn.send(f"<iq type='{kind}' id='{request.get('id')}' from='{sender or request.get('to')}' "
              f"to='{request.get('from')}'><query xmlns='{ECHO_NS}'>{text}</query></iq>")


def round_trip(conn: FakeConnection, iq_id: str, sender: str = FAKE_USER) -> ET.Element:
    """A request goes through and its answer comes back to `sender`; returns the answer."""
    send_request(conn, iq_id, sender)
    request = forwarded(conn, iq_id)
    assert request.get("from") == f"{FAKE_COMPONENT}/{jat_for(sender)}", ET.tostring(request)
    reply_from_resource(conn, request, text=f"answer {iq_id}")
    answer = answer_to(conn, iq_id)
    assert answer.get("type") == "result", ET.tostring(answer)
    assert answer.get("to") == sender and answer.get("from") == FAKE_COMPONENT, ET.tostring(answer)
    return answer


def nothing_reaches(conn: FakeConnection, seconds: float, predicate) -> None:
    """Waits `seconds` and fails if the router sent anything matching `predicate`."""
    sent = [e for e in conn.drain(seconds) if predicate(e)]
    assert not sent, [ET.tostring(e, encoding="unicode") for e in sent]


# --------------------------------------------------------------------------------------------
# Hostile input at the stream level: each attack on a connection that is serving, then the
# router must send the right stream error, close, connect again and serve on the new connection.
# One router takes every attack in a row (module scope): it must survive all of them.

BOMB_PROLOG = ("<!DOCTYPE stream:stream [<!ENTITY a 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'>"
               + "".join(f"<!ENTITY {chr(98 + n)} '{('&' + chr(97 + n) + ';') * 10}'>" for n in range(9))
               + "]>")

STREAM_ATTACKS = {
    # name: (bytes sent once the stream serves, accepted stream error conditions)
    "malformed-xml": (b"<iq type='get' id='m' to='proxy.example.org'><a></b></iq>", {"not-well-formed"}),
    "undeclared-prefix": (b"<x:iq xmlns='jabber:component:accept' id='1'/>", {"not-well-formed"}),
    "entity-expansion-bomb-mid-stream": (
        (BOMB_PROLOG + f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>&j;</body></message>").encode(),
        {"restricted-xml", "not-well-formed"}),
    "undeclared-entity-reference": (
        f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>&xxe;</body></message>".encode(),
        {"restricted-xml", "not-well-formed"}),
    "comment": (b"<!-- a comment -->", {"restricted-xml"}),
    "processing-instruction": (b"<?evil instruction?>", {"restricted-xml"}),
    "xml-declaration-mid-stream": (b"<?xml version='1.0'?>", {"restricted-xml", "not-well-formed"}),
    "endless-stanza": ((f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>" + "A" * 20000).encode(),
                       {"policy-violation"}),
    "endless-start-tag": ((f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}' x='" + "A" * 20000).encode(),
                          {"policy-violation"}),
    # Nesting past 64 levels is dropped without keeping it; the stream closes once the
    # unfinished stanza passes four times max_stanza_size.
    "deeply-nested": (b"<message>" + b"<a>" * 6000, {"policy-violation", "not-well-formed"}),
    "invalid-utf8": (f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>".encode() + b"\xff\xfe</body></message>",
                     {"not-well-formed"}),
    "overlong-utf8": (f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>".encode() + b"\xc0\xbc</body></message>",
                      {"not-well-formed"}),
    "utf8-surrogate": (f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>".encode() + b"\xed\xa0\x80</body></message>",
                       {"not-well-formed"}),
    "utf8-in-attribute-name": (b"<message \xff='1'/>", {"not-well-formed"}),
    "forbidden-character-reference": (
        f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>&#x1;</body></message>".encode(), {"not-well-formed"}),
    "forbidden-raw-control": (
        f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>".encode() + b"\x01</body></message>",
        {"not-well-formed"}),
    "nul-byte": (f"<message to='{FAKE_COMPONENT}' from='{FAKE_USER}'><body>".encode() + b"\x00</body></message>",
                 {"not-well-formed"}),
    # Text is only reported once it ends, at the next tag.
    "text-between-stanzas": (b"hello<presence/>", {"bad-format", "not-well-formed"}),
    "server-closes-the-stream": (b"</stream:stream>", None),   # a clean close: no error to send
}


@pytest.fixture(scope="module")
def stream_attack_target(tmp_path_factory):
    """One router, one fake server and the connection currently serving, shared by the attacks."""
    _need_router()
    setup = FakeSetup(tmp_path_factory.mktemp("stream-attacks"))
    server = setup.server()
    router = setup.router([route_yaml(server.port)])
    state = {"router": router, "server": server, "conn": establish(server), "n": 0}
    yield state
    problems = setup.close()
    assert not problems, problems


def _serving_connection(state) -> FakeConnection:
    """The connection that serves now; checks it does with a round trip."""
    state["n"] += 1
    round_trip(state["conn"], f"before-{state['n']}")
    return state["conn"]


@pytest.mark.parametrize("attack", list(STREAM_ATTACKS))
def test_hostile_stream_gets_a_stream_error_and_the_router_serves_again_on_a_new_connection(
        stream_attack_target, attack):
    state = stream_attack_target
    router, server = state["router"], state["server"]
    data, conditions = STREAM_ATTACKS[attack]
    conn = _serving_connection(state)
    mark = router.mark()

    # 1. The server sends the attack; the router refuses the stream with the right condition.
    conn.try_send(data)
    if conditions is not None:
        error = conn.next(lambda e: e.tag == tag(STREAM_NS, "error"), timeout=5,
                          what=f"a stream error for {attack}")
        assert stream_error_condition(error) in conditions, ET.tostring(error)
        # 2. ... closes the stream and the connection.
        assert conn.stream_closed.wait(5), f"no </stream:stream> after the stream error; {bytes(conn.raw[-200:])!r}"
    assert conn.wait_closed(5), "the router kept the connection open"
    assert conn.parse_error is None, conn.parse_error
    # 3. It connects again, and the new stream serves.
    state["conn"] = establish(server)
    round_trip(state["conn"], f"after-{attack}")
    assert router.running
    router.wait_for_log(r'msg="component authenticated"', since=mark)


@pytest.mark.parametrize("attack", ["dtd", "entity-expansion-bomb", "external-entity"])
def test_dtd_in_the_server_stream_header_is_refused_with_restricted_xml(stream_attack_target, attack):
    state = stream_attack_target
    router, server = state["router"], state["server"]
    prolog = {
        "dtd": "<!DOCTYPE stream:stream>",
        "entity-expansion-bomb": BOMB_PROLOG,
        "external-entity": "<!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>",
    }[attack]
    conn = _serving_connection(state)
    # 1. The serving stream ends cleanly; the router connects again.
    conn.send("</stream:stream>")
    assert conn.wait_closed(5)
    fresh = server.accept()
    # 2. The new stream's header comes with a DTD: refused before any handshake.
    fresh.open_stream(FAKE_COMPONENT, prolog=prolog)
    error = fresh.next(lambda e: e.tag == tag(STREAM_NS, "error"), timeout=5, what="a stream error")
    assert stream_error_condition(error) == "restricted-xml", ET.tostring(error)
    assert fresh.wait_closed(5)
    assert not any(e.tag == tag(COMPONENT_NS, "handshake") for e in fresh.received)
    assert b"root:" not in bytes(fresh.raw)
    # 3. The next connection serves.
    state["conn"] = establish(server)
    round_trip(state["conn"], f"after-{attack}")


def test_router_answers_a_stream_without_id_or_with_a_foreign_root_by_reconnecting(stream_attack_target):
    state = stream_attack_target
    server = state["server"]
    conn = _serving_connection(state)
    conn.send("</stream:stream>")
    assert conn.wait_closed(5)

    # 1. A header without an id: the router cannot make a handshake, so it hangs up.
    fresh = server.accept()
    assert fresh.header_seen.wait(5)
    fresh.send(f"<?xml version='1.0'?><stream:stream xmlns:stream='{STREAM_NS}' xmlns='{COMPONENT_NS}'>")
    assert fresh.wait_closed(5)
    # 2. A root that is no stream: invalid-namespace, then a hang-up.
    fresh = server.accept()
    assert fresh.header_seen.wait(5)
    fresh.send("<?xml version='1.0'?><html xmlns='http://www.w3.org/1999/xhtml' id='x'>")
    error = fresh.next(lambda e: e.tag == tag(STREAM_NS, "error"), timeout=5, what="a stream error")
    assert stream_error_condition(error) == "invalid-namespace", ET.tostring(error)
    assert fresh.wait_closed(5)
    # 3. A wrong handshake answer (a stream error) is logged and retried.
    fresh = server.accept()
    fresh.open_stream(FAKE_COMPONENT)
    fresh.next(lambda e: e.tag == tag(COMPONENT_NS, "handshake"))
    fresh.send(f"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
               "</stream:stream>")
    assert fresh.wait_closed(5)
    # A refused handshake waits reconnect.max (500 ms) before the next try.
    state["conn"] = establish(server)
    round_trip(state["conn"], "after-bad-headers")


# --------------------------------------------------------------------------------------------
# Hostile input at the stanza level: an error reply, or nothing forwarded, and service goes on.


def test_stanzas_without_id_or_to_or_with_unknown_types_are_refused_or_dropped(fake):
    server = fake.server()
    fake.router([route_yaml(server.port)])
    conn = establish(server)
    round_trip(conn, "warm-up")

    # 1. A get without id: bad-request, addressed back to the sender.
    conn.send(f"<iq type='get' from='{FAKE_USER}' to='{FAKE_COMPONENT}'><query xmlns='{ECHO_NS}'/></iq>")
    error = conn.next(lambda e: e.tag == IQ and e.get("type") == "error" and e.get("to") == FAKE_USER,
                      what="an error for the request without id")
    assert stanza_error_condition(error) == "bad-request", ET.tostring(error)
    # 2. An unknown IQ type, and no type at all: bad-request with the same id.
    for iq_id, kind in [("weird", " type='subscribe'"), ("typeless", "")]:
        conn.send(f"<iq{kind} id='{iq_id}' from='{FAKE_USER}' to='{FAKE_COMPONENT}'><query xmlns='{ECHO_NS}'/></iq>")
        error = answer_to(conn, iq_id)
        assert error.get("type") == "error" and stanza_error_condition(error) == "bad-request", ET.tostring(error)
    # 3. A get without `to`, or without `from`, or with an address that is no JID: nothing is forwarded.
    conn.send(f"<iq type='get' id='no-to' from='{FAKE_USER}'><query xmlns='{ECHO_NS}'/></iq>")
    conn.send(f"<iq type='get' id='no-from' to='{FAKE_COMPONENT}'><query xmlns='{ECHO_NS}'/></iq>")
    conn.send(f"<iq type='get' id='bad-jid' from='a@@b/c' to='{FAKE_COMPONENT}'><query xmlns='{ECHO_NS}'/></iq>")
    conn.send(f"<iq type='get' id='bad-to' from='{FAKE_USER}' to='proxy.example.org/'><query xmlns='{ECHO_NS}'/></iq>")
    # 4. Unknown stanzas and types: a message of an unknown type gets feature-not-implemented,
    #    an unknown element and a presence of an unknown type are ignored.
    conn.send(f"<message type='bogus' id='msg' from='{FAKE_USER}' to='{FAKE_COMPONENT}'><body>x</body></message>")
    conn.send(f"<unknown from='{FAKE_USER}' to='{FAKE_COMPONENT}'/>")
    conn.send(f"<presence type='bogus' from='{FAKE_USER}' to='{FAKE_COMPONENT}'/>")
    conn.send(f"<iq type='get' id='foreign-ns' from='{FAKE_USER}' to='{FAKE_COMPONENT}' xmlns='jabber:client'/>")
    message_error = conn.next(lambda e: e.tag == MESSAGE and e.get("id") == "msg", what="the message error")
    assert message_error.get("type") == "error"
    assert stanza_error_condition(message_error) == "feature-not-implemented", ET.tostring(message_error)

    nothing_reaches(conn, 1.0, lambda e: e.get("id") in ("no-to", "no-from", "bad-jid", "bad-to", "foreign-ns")
                    and (e.get("to") or "").startswith(FAKE_TARGET))
    # 5. The stream still serves.
    round_trip(conn, "after-stanzas")


def test_replies_not_matching_a_request_in_flight_are_never_delivered(fake):
    server = fake.server()
    fake.router([route_yaml(server.port)])
    conn = establish(server, resources=("a", "b"))
    other_user = "other@example.org/desk"

    # 1. A request is in flight on one resource.
    send_request(conn, "real", FAKE_USER)
    request = forwarded(conn, "real")
    holder = request.get("to")
    other = f"{FAKE_TARGET}/b" if holder.endswith("/a") else f"{FAKE_TARGET}/a"
    jat_address = request.get("from")
    # 2. Forgeries: an account outside the target, the target's other resource, the target's bare
    #    JID, made-up ids, the right id to another sender's JAT, a JAT that is not base64url.
    forgeries = [
        (f"mallory@example.org/x", jat_address, "real"),
        (f"service@example.org.evil/a", jat_address, "real"),
        (other, jat_address, "real"),
        (FAKE_TARGET, jat_address, "real"),
        (holder, jat_address, "made-up-1"),
        (holder, jat_address, ""),
        (holder, f"{FAKE_COMPONENT}/{jat_for(other_user)}", "real"),
        (holder, f"{FAKE_COMPONENT}/not*base64", "real"),
        (holder, f"{FAKE_COMPONENT}/{jat_for('not a jid@@')}", "real"),
        (holder, FAKE_COMPONENT, "real"),
        (holder, f"someone@{FAKE_COMPONENT}/{jat_for(FAKE_USER)}", "real"),
    ]
    for sender, to, iq_id in forgeries:
        conn.send(f"<iq type='result' id='{iq_id}' from='{sender}' to='{to}'><query xmlns='{ECHO_NS}'>forged"
                  f"</query></iq>")
    # An unsolicited error reply from the target, and a reply with no id at all.
    conn.send(f"<iq type='error' id='made-up-2' from='{holder}' to='{jat_address}'>"
              f"<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    conn.send(f"<iq type='result' from='{holder}' to='{jat_address}'/>")
    nothing_reaches(conn, 1.0, lambda e: not (e.get("to") or "").startswith(FAKE_TARGET)
                    and e.tag == IQ and e.get("type") in ("result", "error"))
    # 3. The real answer is delivered exactly once, with its own payload; a duplicate is dropped.
    reply_from_resource(conn, request, text="genuine")
    answer = answer_to(conn, "real")
    assert answer.get("to") == FAKE_USER and "genuine" in ET.tostring(answer, encoding="unicode")
    reply_from_resource(conn, request, text="duplicate")
    nothing_reaches(conn, 1.0, lambda e: e.get("id") == "real")


def test_two_senders_with_the_same_id_each_get_their_own_answer(fake):
    server = fake.server()
    fake.router([route_yaml(server.port)])
    conn = establish(server, resources=("a",))
    second = "second@example.org/laptop"

    send_request(conn, "same", FAKE_USER, text="first")
    first_request = forwarded(conn, "same")
    send_request(conn, "same", second, text="second")
    second_request = forwarded(conn, "same")
    # The same sender reusing an id while it is in flight is refused, and its first request survives.
    send_request(conn, "same", FAKE_USER, text="again")
    refused = answer_to(conn, "same")
    assert refused.get("type") == "error" and refused.get("to") == FAKE_USER, ET.tostring(refused)
    assert stanza_error_condition(refused) == "bad-request"

    reply_from_resource(conn, second_request, text="for second")
    reply_from_resource(conn, first_request, text="for first")
    answers = [answer_to(conn, "same"), answer_to(conn, "same")]
    by_sender = {a.get("to"): ET.tostring(a, encoding="unicode") for a in answers}
    assert set(by_sender) == {FAKE_USER, second}, by_sender
    assert "for first" in by_sender[FAKE_USER] and "for second" in by_sender[second], by_sender
    nothing_reaches(conn, 0.5, lambda e: e.get("id") == "same")


@pytest.mark.parametrize("encoder", ["hmac", "base64url"])
def test_a_jat_made_by_another_route_does_not_reach_its_sender_through_this_route(fake, encoder):
    """hmac binds a JAT to its route, so it does not even decode on another; base64url decodes
    anywhere, so what stops it is that the request is in flight on the other route only."""
    server = fake.server()
    key_env = {"FAULTS_JAT_KEY": "a shared hmac key of enough length"}
    spec = "name: hmac\n      key: { env: FAULTS_JAT_KEY }" if encoder == "hmac" else "name: base64url"
    fake.router([route_yaml(server.port, encoder=spec),
                 route_yaml(server.port, component="other.example.org", encoder=spec)], env=key_env)
    connections = {}
    for _ in range(2):
        conn = server.accept()
        assert conn.header_seen.wait(5)
        connections[conn.header.get("to")] = conn
    first = establish(server, connection=connections[FAKE_COMPONENT])
    second = establish(server, component="other.example.org", connection=connections["other.example.org"])

    # 1. A request through the other route; its resource sees the other route's JAT.
    second.send(f"<iq type='get' id='cross' from='{FAKE_USER}' to='other.example.org'>"
                f"<query xmlns='{ECHO_NS}'/></iq>")
    request = forwarded(second, "cross")
    other_jat = request.get("from").split("/", 1)[1]
    # 2. The target answers through this route with that JAT: nothing is delivered.
    first.send(f"<iq type='result' id='cross' from='{FAKE_TARGET}/a' to='{FAKE_COMPONENT}/{other_jat}'/>")
    nothing_reaches(first, 1.0, lambda e: e.get("id") == "cross")
    assert first.drain(0.1) == []
    # 3. The right route still delivers the genuine answer, once.
    reply_from_resource(second, request)
    answer = answer_to(second, "cross")
    assert answer.get("to") == FAKE_USER and answer.get("from") == "other.example.org"
    nothing_reaches(second, 0.5, lambda e: e.get("id") == "cross")


# --------------------------------------------------------------------------------------------
# Protections, checked cheaply against the fake server.


def test_access_list_refuses_with_forbidden(fake):
    server = fake.server()
    fake.router([route_yaml(server.port, extra="""
access:
  allow: [example.org, "*@partner.example.net"]
  deny: [mallory@example.org]
""")])
    conn = establish(server)

    for iq_id, sender in [("denied", "mallory@example.org/x"), ("outsider", "eve@elsewhere.example/x"),
                          ("subdomain", "eve@sub.example.org/x")]:
        send_request(conn, iq_id, sender)
        error = answer_to(conn, iq_id)
        assert error.get("type") == "error" and error.get("to") == sender, ET.tostring(error)
        assert stanza_error_condition(error) == "forbidden", ET.tostring(error)
        assert error.find(tag(COMPONENT_NS, "error")).get("type") == "auth"
    round_trip(conn, "allowed")
    round_trip(conn, "partner", sender="bob@partner.example.net/x")
    nothing_reaches(conn, 0.3, lambda e: e.get("id") in ("denied", "outsider", "subdomain"))


def test_rate_limit_answers_policy_violation_beyond_the_burst_and_recovers(fake):
    server = fake.server()
    fake.router([route_yaml(server.port, extra="""
rate_limit:
  requests_per_second: 2
  burst: 3
""")])
    conn = establish(server)

    # 1. A burst of 8 at once: 3 pass, the rest get policy-violation (type wait) at once.
    for n in range(8):
        send_request(conn, f"burst-{n}")
    passed, limited = [], []
    for n in range(8):
        element = conn.next(lambda e: e.tag == IQ and (e.get("id") or "").startswith("burst-"))
        (passed if element.get("type") == "get" else limited).append(element)
    assert len(passed) == 3, [ET.tostring(e) for e in passed]
    assert all(stanza_error_condition(e) == "policy-violation" for e in limited), [ET.tostring(e) for e in limited]
    assert all(e.find(tag(COMPONENT_NS, "error")).get("type") == "wait" for e in limited)
    # 2. Another sender is not limited by the first one's bucket.
    round_trip(conn, "other-sender", sender="other@example.org/x")
    # 3. After a pause the sender is served again.
    time.sleep(1.0)
    round_trip(conn, "after-pause")


def test_get_is_retried_on_another_resource_when_its_resource_leaves_and_set_is_not(fake):
    server = fake.server()
    fake.router([route_yaml(server.port, extra="""
retry:
  namespaces: ["urn:example:echo"]
""")])
    conn = establish(server, resources=("a", "b"))

    # 1. A get: its resource goes offline; the same request goes to the other resource.
    send_request(conn, "retried-get", kind="get")
    first = forwarded(conn, "retried-get")
    conn.send(f"<presence type='unavailable' from='{first.get('to')}' to='{FAKE_COMPONENT}'/>")
    second = forwarded(conn, "retried-get")
    assert second.get("to") != first.get("to"), "the retry went to the resource that left"
    assert second.get("from") == first.get("from")
    reply_from_resource(conn, second, text="from the second")
    answer = answer_to(conn, "retried-get")
    assert answer.get("type") == "result" and answer.get("to") == FAKE_USER
    # 2. A set: never retried; the requester gets recipient-unavailable.
    announce(conn, ("a", "b"))
    send_request(conn, "unretried-set", kind="set")
    held = forwarded(conn, "unretried-set")
    conn.send(f"<presence type='unavailable' from='{held.get('to')}' to='{FAKE_COMPONENT}'/>")
    answer = answer_to(conn, "unretried-set")
    assert answer.get("type") == "error" and stanza_error_condition(answer) == "recipient-unavailable"
    nothing_reaches(conn, 0.5, lambda e: e.get("id") == "unretried-set" and e.get("type") == "set")
    # 3. A get in a namespace not configured for retries is not retried either.
    announce(conn, ("a", "b"))
    conn.send(f"<iq type='get' id='other-ns' from='{FAKE_USER}' to='{FAKE_COMPONENT}'><q xmlns='urn:other'/></iq>")
    held = forwarded(conn, "other-ns")
    conn.send(f"<presence type='unavailable' from='{held.get('to')}' to='{FAKE_COMPONENT}'/>")
    answer = answer_to(conn, "other-ns")
    assert stanza_error_condition(answer) == "recipient-unavailable", ET.tostring(answer)


def test_full_resources_give_resource_constraint_at_once(fake):
    server = fake.server()
    fake.router([route_yaml(server.port, extra="""
limits:
  max_pending: 3
  max_pending_per_resource: 2
""")])
    conn = establish(server, resources=("a",))

    send_request(conn, "held-1")
    send_request(conn, "held-2")
    first, second = forwarded(conn, "held-1"), forwarded(conn, "held-2")
    send_request(conn, "too-many")
    error = answer_to(conn, "too-many", timeout=1.0)
    assert stanza_error_condition(error) == "resource-constraint", ET.tostring(error)
    assert error.find(tag(COMPONENT_NS, "error")).get("type") == "wait"
    # A second resource takes one more; then the route limit (3) refuses the next.
    announce(conn, ("b",))
    send_request(conn, "third")
    third = forwarded(conn, "third")
    send_request(conn, "route-full")
    assert stanza_error_condition(answer_to(conn, "route-full", timeout=1.0)) == "resource-constraint"
    # Answers free the places again.
    for request in (first, second, third):
        reply_from_resource(conn, request)
    for iq_id in ("held-1", "held-2", "third"):
        assert answer_to(conn, iq_id).get("type") == "result"
    round_trip(conn, "free-again")


# --------------------------------------------------------------------------------------------
# Secrets never appear in logs or routerctl output.

SECRET_A = "Secret-A-7f3a9b1c-component"
SECRET_B = "Secret-B-c0ffee42-inline"
HMAC_KEY = "HmacKey-9d8e7f6a5b4c3d2e1f00"
HMAC_KEY_NEW = "HmacKey-NEW-0a1b2c3d4e5f6789"
SEALED_KEY = "SealedKey-5a5a5a5a-from-a-file"


def secret_forms(secret: str) -> list[str]:
    """The secret as text, and the encodings a careless log line could use."""
    data = secret.encode()
    import base64
    return [secret, data.hex(), base64.b64encode(data).decode().rstrip("="),
            base64.urlsafe_b64encode(data).decode().rstrip("="), repr(list(data))[1:-1]]


def routerctl(*arguments: str, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(router_binary()), *arguments], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def test_secrets_and_keys_never_appear_in_logs_or_routerctl_output(fake, tmp_path):
    server = fake.server()
    key_file = tmp_path / "sealed.key"
    key_file.write_text(SEALED_KEY + "\n")
    env = {"FAULTS_SECRET_A": SECRET_A, "FAULTS_HMAC_KEY": HMAC_KEY, "FAULTS_HMAC_KEY_NEW": HMAC_KEY_NEW}
    route_a = route_yaml(server.port, secret="unused", request_timeout="1s",
                         encoder="name: hmac\n      key: { env: FAULTS_HMAC_KEY }")
    route_a = route_a.replace(yaml_string("unused"), "{ env: FAULTS_SECRET_A }")
    route_b = route_yaml(server.port, component="other.example.org", secret=SECRET_B,
                         encoder=f"name: sealed\n      key: {{ file: {key_file} }}")
    router = fake.router([route_a, route_b], env=env, log_level="trace")
    socket_path = str(fake.control_socket(router))
    outputs: list[str] = []

    # 1. Route B's first handshake is refused (an error is logged), route A is served.
    connections = {}
    while len(connections) < 2:
        conn = server.accept()
        assert conn.header_seen.wait(5)
        connections[conn.header.get("to")] = conn
    refused = connections["other.example.org"]
    refused.open_stream("other.example.org")
    refused.next(lambda e: e.tag == tag(COMPONENT_NS, "handshake"))
    refused.send("<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                 "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>wrong secret</text></stream:error>")
    first = establish(server, secret=SECRET_A, connection=connections[FAKE_COMPONENT])
    second = establish(server, component="other.example.org", secret=SECRET_B)

    # 2. Traffic: answers, a timeout, a forged reply, a stream attack and a reconnect.
    for n in range(5):
        send_request(first, f"t{n}")
        request = forwarded(first, f"t{n}")
        reply_from_resource(first, request)
        answer_to(first, f"t{n}")
    send_request(first, "times-out")
    request = forwarded(first, "times-out")
    first.send(f"<iq type='result' id='times-out' from='mallory@example.org/x' to='{request.get('from')}'/>")
    assert stanza_error_condition(answer_to(first, "times-out", timeout=5)) == "remote-server-timeout"
    second.send(f"<iq type='get' id='s1' from='{FAKE_USER}' to='other.example.org'><q xmlns='{ECHO_NS}'/></iq>")
    request = forwarded(second, "s1")
    reply_from_resource(second, request)
    answer_to(second, "s1")
    second.send(b"<!-- boom -->")
    assert second.wait_closed(5)
    second = establish(server, component="other.example.org", secret=SECRET_B)

    # 3. Every read-only routerctl command, as text and JSON, while a request is in flight.
    send_request(first, "in-flight")
    forwarded(first, "in-flight")
    for command in (["status"], ["resources", FAKE_COMPONENT], ["resources", "other.example.org"],
                    ["pending", FAKE_COMPONENT], ["metrics"]):
        for json_flag in ([], ["--json"]):
            result = routerctl(*command, "--socket", socket_path, *json_flag)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            outputs.append(result.stdout + result.stderr)
    # 4. `check` on the valid file, on a broken one, and without the environment.
    for arguments, variables, expect_ok in [
        ([str(router.config_path)], env, True),
        ([str(router.config_path)], {}, False),
    ]:
        result = routerctl("check", *arguments, env=variables)
        assert (result.returncode == 0) == expect_ok, result.stdout + result.stderr
        outputs.append(result.stdout + result.stderr)
    broken = tmp_path / "broken.yaml"
    broken.write_text(router.config_path.read_text().replace("max_stanza_size: 4KiB", "max_stanza_size: 1B", 1))
    result = routerctl("check", str(broken), env=env)
    assert result.returncode != 0
    outputs.append(result.stdout + result.stderr)
    # 5. A reload that rotates the hmac key (the new key signs, the old one still verifies).
    mark = router.mark()
    text = router.config_path.read_text()
    router.config_path.write_text(text.replace("key: { env: FAULTS_HMAC_KEY }",
                                               "keys: [ { env: FAULTS_HMAC_KEY_NEW }, { env: FAULTS_HMAC_KEY } ]"))
    result = routerctl("reload", "--socket", socket_path)
    outputs.append(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    router.wait_for_log(r'msg="configuration reloaded"', since=mark, timeout=5)
    send_request(first, "after-reload")
    reply_from_resource(first, forwarded(first, "after-reload"))
    assert answer_to(first, "after-reload").get("type") == "result"
    result = routerctl("stop", "--socket", socket_path)
    outputs.append(result.stdout + result.stderr)
    router.process.wait(timeout=10)

    texts = {"router log": router.log_text(), **{f"routerctl output {n}": o for n, o in enumerate(outputs)}}
    assert "level=trace" in texts["router log"], "the router did not log at trace level"
    for secret in (SECRET_A, SECRET_B, HMAC_KEY, HMAC_KEY_NEW, SEALED_KEY):
        for form in secret_forms(secret):
            leaks = [name for name, text in texts.items() if form in text]
            assert not leaks, f"{secret!r} appears (as {form!r}) in {leaks}"


# --------------------------------------------------------------------------------------------
# Real Prosody, real clients: overload and chaos.

from conftest import FORGER_ACCOUNT, REQUESTER_ACCOUNT  # noqa: E402
from harness import COMPONENT, COMPONENT_SECRET, DOMAIN  # noqa: E402
from load_driver import LoadRecorder, RSSSampler, TimedService, drive, median, percentile, rss_kib  # noqa: E402


@pytest.fixture
def own_routers(tmp_path):
    """Routers with configurations of the test's own, against the session's Prosody."""
    _need_router()
    setup = FakeSetup(tmp_path)
    yield setup
    problems = setup.close()
    if problems:
        pytest.fail("\n".join(problems))


def prosody_route(prosody, target: str, request_timeout: str, extra: str = "", strategy: str = "random") -> str:
    return route_yaml(prosody.component_port, component=COMPONENT, target=f"{target}@{DOMAIN}",
                      secret=COMPONENT_SECRET, request_timeout=request_timeout, extra=extra).replace(
        "strategy: round-robin", f"strategy: {strategy}")


def run_load(clients, recorder: LoadRecorder, sessions, prefix: str, epoch: int, count: int, window: int,
             stop: threading.Event, give_up_after: float, kinds=("get",), rate=None):
    """Starts a driver per session on the clients' loop; returns the futures."""
    return [asyncio.run_coroutine_threadsafe(
        drive(recorder, session, f"{prefix}{n}", epoch, count, window, COMPONENT, stop, give_up_after, kinds,
              seed=epoch * 100 + n, rate=rate), clients.loop.loop) for n, session in enumerate(sessions)]


def wait_answered(recorder: LoadRecorder, timeout: float, ids=None) -> None:
    """Waits until every request (or those in `ids`) has an answer, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [r for r in list(recorder.sent.values()) if not r.answers and (ids is None or r.id in ids)]
        if not pending:
            return
        time.sleep(0.1)


def test_overload_gets_resource_constraint_at_once_memory_stays_bounded_and_service_recovers(
        own_routers, clients, target, prosody):
    router = own_routers.router([prosody_route(prosody, target, "5s", extra="""
limits:
  max_pending: 12
  max_pending_per_resource: 5
""")], log_level="info")
    router.wait_for_log(r'msg="component authenticated"')
    services = []
    for name in ("slow1", "slow2", "slow3"):
        service = TimedService(clients.loop, prosody.c2s_port, name, account=target, mode="delay", delay=1.0)
        clients.sessions.append(service)
        service.connect()
        services.append(service)
    router.wait_for_resources(COMPONENT, {"slow1", "slow2", "slow3"})
    requesters = [clients.requester(REQUESTER_ACCOUNT, f"flood{n}") for n in range(3)]
    requesters.append(clients.requester(FORGER_ACCOUNT, "flood3"))
    recorder = LoadRecorder()
    for requester in requesters:
        recorder.attach(clients.loop, requester)
    baseline = rss_kib(router.process.pid)

    # 1. A flood: 4 x 1500 requests with 200 in flight each, against room for 12 at a time
    #    (3 resources answering after 1 s, 5 each, 12 on the route).
    started = time.monotonic()
    stop = threading.Event()
    with RSSSampler(router.process.pid) as rss:
        futures = run_load(clients, recorder, requesters, "flood", 1, 1500, 200, stop, give_up_after=15)
        sent = sum(f.result(timeout=60) for f in futures)
        wait_answered(recorder, timeout=15)
    flood_seconds = time.monotonic() - started
    summary = recorder.summary()
    constrained = recorder.latencies(lambda a: a.condition == "resource-constraint")
    served = recorder.latencies(lambda a: a.type == "result")
    print(f"\noverload: {sent} requests in {flood_seconds:.1f}s: {summary}; resource-constraint after "
          f"median {median(constrained) * 1000:.0f} ms (p95 {percentile(constrained, 0.95) * 1000:.0f} ms), "
          f"results after median {median(served) * 1000:.0f} ms; router RSS {baseline} KiB before, "
          f"peak {rss.peak} KiB; most held at once: {[s.max_concurrent() for s in services]}")

    # 2. Every request got exactly one answer: a result or resource-constraint, nothing else.
    assert sent == 6000
    assert not recorder.problems(COMPONENT, may_be_lost=lambda r: False)
    assert set(summary) <= {"result", "error resource-constraint"}, summary
    assert summary.get("error resource-constraint", 0) >= sent // 2, summary
    # 3. The excess was refused at once, not queued until a resource had room: a refusal waits for
    #    no resource, a result waits at least the 1 s its resource takes (both wait in the flood's
    #    own queue in the clients and Prosody, which a loaded machine makes longer).
    assert median(constrained) < median(served) - 0.5, (
        f"median latency: resource-constraint {median(constrained):.2f}s, result {median(served):.2f}s")
    # 4. No resource held more than its limit; the route never more than its own.
    assert max(s.max_concurrent() for s in services) <= 5
    # 5. Memory stayed bounded: no queue grew with the flood.
    assert rss.peak - baseline < 48 * 1024, f"RSS grew from {baseline} to {rss.peak} KiB"
    # 6. With the load gone, service is back: requests within the room all succeed.
    replies = requesters[0].request_many(10, timeout=10)
    assert [r.type for r in replies] == ["result"] * 10, replies
    assert router.running


def test_chaos_every_request_gets_exactly_one_answer_through_flaps_slowness_silence_and_a_prosody_restart(
        own_routers, clients, target, prosody):
    """Thousands of requests from several requesters, a window of each in flight, while resources
    flap, one answers slowly, one never answers, one disconnects and comes back, and Prosody is
    restarted once.

    What the router controls, and so what is asserted:
    - no request is ever answered twice, and no answer reaches a session that did not send the
      request (ids are unique per run; each names its session), with the payload of another;
    - every request sent on a session that lives to the end of its phase gets exactly one answer;
    - before the restart, a request can go unanswered only if it was sent in the last
      `request_timeout` + slack before Prosody went down: the router answers every request within
      its timeout, so an older one without an answer is the router's fault. The newer ones may be
      lost with Prosody itself: the requester's own connection dies with it, and the router's
      answer for them (sent once it is back) goes to a session that no longer exists.
    Requesters and resources come back after the restart with new resources, so an answer meant
    for the old session cannot be mistaken for one to the new.
    """
    rng = random.Random(5)
    request_timeout = 2.0
    router = own_routers.router([prosody_route(prosody, target, "2s", extra="""
ejection:
  consecutive_failures: 3
  cooldown: 1s
  max_cooldown: 4s
retry:
  namespaces: ["urn:example:echo"]
  try_timeout: 1s
""")], log_level="debug")
    router.wait_for_log(r'msg="component authenticated"')
    recorder = LoadRecorder()
    stop_flapping = threading.Event()

    def bring_up(epoch: int):
        services = {
            "fast": clients.service(target, f"fast-{epoch}"),
            "slow": clients.service(target, f"slow-{epoch}", mode="delay", delay=0.7),
            "silent": clients.service(target, f"silent-{epoch}", mode="never"),
            "flapper": clients.service(target, f"flapper-{epoch}", mode="delay", delay=0.3),
        }
        router.wait_for_resources(COMPONENT, {f"fast-{epoch}", f"slow-{epoch}", f"flapper-{epoch}"}, since=mark)
        requesters = [clients.requester(REQUESTER_ACCOUNT, f"chaos{n}-{epoch}") for n in range(3)]
        requesters.append(clients.requester(FORGER_ACCOUNT, f"chaos3-{epoch}"))
        for requester in requesters:
            recorder.attach(clients.loop, requester)
        return services, requesters

    async def flap(session, stop: threading.Event, seed: int):
        """Unavailable and available again, without disconnecting: late answers come after it left."""
        local = random.Random(seed)
        while not stop.is_set():
            await asyncio.sleep(local.uniform(0.4, 1.2))
            if session.client is None or not session.client.is_connected():
                return
            session.client.send_presence(ptype="unavailable")
            await asyncio.sleep(local.uniform(0.2, 0.8))
            if session.client is None or not session.client.is_connected():
                return
            session.client.send_presence()

    def phase(epoch: int, seconds: float, per_requester: int, rate: float):
        services, requesters = bring_up(epoch)
        stop = threading.Event()
        flapping = asyncio.run_coroutine_threadsafe(flap(services["flapper"], stop, epoch), clients.loop.loop)
        futures = run_load(clients, recorder, requesters, f"e{epoch}r", epoch, per_requester, 20, stop,
                           give_up_after=request_timeout + 6, kinds=("get", "get", "set"), rate=rate)
        # A resource that disconnects and logs in again, while the load runs.
        ends = time.monotonic() + seconds
        bounces = 0
        while time.monotonic() < ends and not all(f.done() for f in futures):
            time.sleep(min(rng.uniform(1.5, 3.0), max(0.0, ends - time.monotonic())))
            if time.monotonic() >= ends:
                break
            bouncer = clients.service(target, f"bouncer-{epoch}")
            time.sleep(rng.uniform(0.5, 1.5))
            bouncer.disconnect()
            bounces += 1
        return services, requesters, stop, futures, flapping, bounces

    # 1. Before the restart: 4 requesters at 40 requests per second each, for 16 s.
    mark = 0
    started = time.monotonic()
    _, first_requesters, stop1, futures1, flapping1, bounces1 = phase(1, 16, 640, rate=40)
    assert_alive(router, "during the load before the restart")
    # 2. Prosody goes down under everyone and comes back; the router reconnects on its own.
    mark = router.mark()
    killed_at = time.monotonic()
    prosody.restart()
    stop1.set()
    sent1 = sum(f.result(timeout=20) for f in futures1)
    flapping1.result(timeout=5)
    try:
        router.wait_for_log(r'msg="component authenticated"', timeout=20, since=mark)
    except HarnessError:
        assert_alive(router, "while Prosody restarted")
        raise
    restarted_in = time.monotonic() - killed_at
    # 3. After the restart: new sessions, 12 s of load, then every answer is awaited.
    services2, second_requesters, stop2, futures2, flapping2, bounces2 = phase(2, 12, 480, rate=40)
    sent2 = sum(f.result(timeout=60) for f in futures2)
    assert_alive(router, "during the load after the restart")
    stop2.set()
    flapping2.result(timeout=5)
    wait_answered(recorder, timeout=request_timeout + 6,
                  ids={r.id for r in recorder.sent.values() if r.epoch == 2})
    time.sleep(1.0)   # room for a duplicate to show up
    elapsed = time.monotonic() - started

    lost_window = request_timeout + 1.5
    lost_at_restart = [r for r in recorder.sent.values()
                       if r.epoch == 1 and not r.answers and r.sent_at >= killed_at - lost_window]
    problems = recorder.problems(COMPONENT, may_be_lost=lambda r: r.epoch == 1 and r.sent_at >= killed_at - lost_window)
    summary = recorder.summary()
    metrics = routerctl("metrics", "--socket", str(own_routers.control_socket(router)))
    print(f"\nchaos: {sent1} + {sent2} requests in {elapsed:.0f}s ({bounces1 + bounces2} bounces, Prosody back "
          f"and the router re-authenticated after {restarted_in:.1f}s): {summary}; "
          f"lost with Prosody's restart: {len(lost_at_restart)}; problems: {len(problems)}")
    for line in metrics.stdout.splitlines():
        if re.match(r"^client_proxy_router_(requests_forwarded|replies|router_errors|dropped|timeouts|reconnects)", line):
            print("  " + line)

    assert sent1 + sent2 >= 3000, f"only {sent1} + {sent2} requests were sent"
    assert not problems, "\n".join(problems[:30]) + f"\n... {len(problems)} problems"
    # The chaos happened: timeouts (the silent resource), lost resources (flaps and bounces).
    assert summary.get("result", 0) > (sent1 + sent2) // 2, summary
    assert summary.get("error remote-server-timeout", 0) > 0, summary
    assert router.running
    assert COMPONENT_SECRET not in router.log_text()


def test_reload_of_a_hostile_configuration_is_refused_and_the_router_keeps_serving(fake):
    """A configuration that does not load changes nothing (config.example.yaml, `reload`), even
    one built to hurt the YAML loader: a recursive alias, a deeply nested document."""
    server = fake.server()
    router = fake.router([route_yaml(server.port)])
    conn = establish(server)
    socket_path = str(fake.control_socket(router))
    good = router.config_path.read_text()

    for name, hostile in [("recursive alias", good.replace("routes:", "x: &a [*a]\nroutes:", 1)),
                          ("deep nesting", good.replace("routes:", "x: " + "[" * 5000 + "]" * 5000 + "\nroutes:", 1)),
                          ("not YAML", "routes: [\n")]:
        router.config_path.write_text(hostile)
        result = routerctl("reload", "--socket", socket_path)
        assert_alive(router, f"on the reload of a file with a {name}")
        assert result.returncode != 0, f"the reload of a file with a {name} was accepted: {result.stdout}"
        round_trip(conn, f"after-{name.replace(' ', '-')}")


def test_server_that_stops_reading_makes_the_router_stop_reading_with_bounded_memory(fake):
    """Back-pressure: when the server takes no output, the router's output buffer stops growing
    at its high-water mark and the router stops reading, so the server's own sends block; memory
    stays bounded. Once the server reads again, every request is forwarded or answered, once."""
    server = fake.server()
    router = fake.router([route_yaml(server.port, request_timeout="120s", extra="""
limits:
  max_pending: 1000
""")], log_level="info")
    conn = establish(server, resources=("a",))
    round_trip(conn, "warm-up")
    conn.keep_received = False
    pid = router.process.pid
    baseline = rss_kib(pid)
    total, batch = 100_000, 500
    progress = {"sent": 0}

    def flood():
        for start in range(0, total, batch):
            conn.send("".join(f"<iq type='get' id='f{n}' from='{FAKE_USER}' to='{FAKE_COMPONENT}'>"
                              f"<query xmlns='{ECHO_NS}'>{'x' * 100}</query></iq>" for n in range(start, start + batch)))
            progress["sent"] = start + batch

    # 1. The server stops reading and floods the router: 1000 requests are forwarded (the route's
    #    limit), every other one makes an error reply; none of that output can leave.
    conn.reading.clear()
    sender = threading.Thread(target=flood, name="flood", daemon=True)
    with RSSSampler(pid) as rss:
        sender.start()
        last, still_since = -1, time.monotonic()
        while sender.is_alive() and time.monotonic() - still_since < 3.0:
            time.sleep(0.2)
            if progress["sent"] != last:
                last, still_since = progress["sent"], time.monotonic()
        stalled_at = progress["sent"]
        time.sleep(0.5)
    print(f"\nback-pressure: the flood stalled after {stalled_at} of {total} requests "
          f"({stalled_at * 220 // 1024 // 1024} MiB); router RSS {baseline} KiB before, peak {rss.peak} KiB")
    assert_alive(router, "under the flood")
    # 2. The router stopped reading: the flood could not go on, and memory stayed bounded.
    assert sender.is_alive() and stalled_at < total, "the flood never stalled: the router read everything"
    assert rss.peak - baseline < 32 * 1024, f"RSS grew from {baseline} to {rss.peak} KiB"
    # 3. The server reads again: the flood completes, and each request is forwarded or refused once.
    conn.reading.set()
    sender.join(timeout=60)
    assert not sender.is_alive()
    seen: Counter[str] = Counter()
    forwarded: list[ET.Element] = []
    refused: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    while len(seen) < total and time.monotonic() < deadline:
        for element in conn.drain(0.5):
            iq_id = element.get("id") or ""
            if not iq_id.startswith("f"):
                continue
            seen[iq_id] += 1
            if element.get("type") == "get":
                forwarded.append(element)
            else:
                refused[stanza_error_condition(element)] += 1
    print(f"back-pressure: {len(forwarded)} forwarded, refused: {dict(refused)}")
    assert len(seen) == total, f"{total - len(seen)} requests got neither a forward nor an answer"
    assert max(seen.values()) == 1, [i for i, c in seen.items() if c > 1][:10]
    assert len(forwarded) == 1000 and set(refused) == {"resource-constraint"}, (len(forwarded), refused)
    # 4. The resource answers what it holds; the route serves again.
    for request in forwarded:
        reply_from_resource(conn, request)
    answered = 0
    while answered < len(forwarded) and time.monotonic() < deadline:
        answered += sum(1 for e in conn.drain(0.5) if e.get("type") == "result")
    assert answered == len(forwarded)
    round_trip(conn, "after-flood")
