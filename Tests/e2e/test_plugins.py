"""End-to-end behaviour of the balancing strategies and JAT encoders chosen in the YAML: a real
Prosody, real slixmpp clients, the built routerctl.

Each test writes its route's `strategy:` and `encoder:` into the configuration the other
end-to-end tests use (harness.router_config_yaml), checks it with `routerctl check`, runs the
router, and asserts what the requesters and the service resources see. Counts per resource
come from the router's control socket (`routerctl resources ROUTE --json`).
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import json
import os
import re
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest

from conftest import FORGER_ACCOUNT, REQUESTER_ACCOUNT
from harness import (
    COMPONENT, COMPONENT_SECRET, DOMAIN, ECHO_NS, STANZAS_NS, RouterProcess, jat_for, router_binary, router_config_yaml,
)

# The plugin block that router_config_yaml writes; each test replaces it with its own.
DEFAULT_PLUGINS = "    strategy:\n      name: random\n    encoder:\n      name: base64url\n"

# Key material for the hmac and sealed encoders (at least 16 bytes each).
HMAC_KEY = "an hmac key of more than sixteen bytes"
SEALED_KEY = "a sealed key, also longer than sixteen bytes"

# Accounts for the sticky-by-sender test, registered once per run of this file.
STICKY_ACCOUNTS = ("bob", "carol", "dave", "erin", "frank", "grace")


# --------------------------------------------------------------------------------------------
# Helpers


def indent(yaml: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in yaml.strip("\n").splitlines())


def with_plugins(text: str, strategy: str, encoder: str) -> str:
    """`text` (from harness.router_config_yaml) with its `strategy:` and `encoder:` blocks replaced.

    `strategy` and `encoder` are the YAML mappings under those keys, e.g. "name: round-robin".
    """
    assert DEFAULT_PLUGINS in text, "harness.router_config_yaml no longer writes the plugin block this file replaces"
    plugins = "    strategy:\n" + indent(strategy, 6) + "    encoder:\n" + indent(encoder, 6)
    return text.replace(DEFAULT_PLUGINS, plugins)


def plugin_config(routers, target: str, strategy: str = "name: random", encoder: str = "name: base64url",
                  request_timeout: str = "10s") -> tuple[str, Path]:
    """The test configuration for the session's Prosody with the given plugins, and the control
    socket it names (in a short folder that the `routers` fixture removes)."""
    socket_folder = Path(tempfile.mkdtemp(prefix="cpr-"))
    routers.socket_folders.append(socket_folder)
    control_socket = socket_folder / "control.sock"
    text = router_config_yaml(COMPONENT, routers.prosody.component_port, COMPONENT_SECRET, f"{target}@{DOMAIN}",
                              request_timeout, control_socket=control_socket)
    return with_plugins(text, strategy, encoder), control_socket


def run_check(path: Path, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    if not router_binary().exists():
        pytest.fail(f"{router_binary()} does not exist; run `swift build` first (or set ROUTERCTL)")
    return subprocess.run([str(router_binary()), "check", str(path)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env} if env else None)


def start_router(routers, target: str, strategy: str = "name: random", encoder: str = "name: base64url",
                 request_timeout: str = "10s", env: Optional[dict[str, str]] = None) -> RouterProcess:
    """Checks and starts a router with the given plugins; the `routers` fixture stops it."""
    text, control_socket = plugin_config(routers, target, strategy, encoder, request_timeout)
    router = RouterProcess(routers.workdir, text, name=f"router{len(routers.started) + 1}", env=env)
    router.control_socket = control_socket
    checked = run_check(router.config_path, env)
    assert checked.returncode == 0, f"routerctl check refused the test's own configuration:\n{checked.stderr}\n{text}"
    routers.started.append(router)
    router.start()
    router.wait_for_log(r'msg="component authenticated".*route=' + re.escape(COMPONENT))
    return router


def start_serving(routers, clients, target, resources=("a", "b"), services=None, **router_options):
    """A router with the given plugins, and service resources it knows of.

    `services` maps a resource name to ServiceClient options (mode, delay); other resources
    answer at once.
    """
    router = start_router(routers, target, **router_options)
    services = services or {}
    made = {name: clients.service(target, name, **services.get(name, {})) for name in resources}
    router.wait_for_resources(COMPONENT, set(resources))
    return router, made


def control(router: RouterProcess, *arguments: str) -> dict:
    """Runs `routerctl ARGUMENTS --socket <the router's socket> --json` and returns its JSON."""
    result = subprocess.run([str(router_binary()), *arguments, "--socket", str(router.control_socket), "--json"],
                            capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, f"routerctl {' '.join(arguments)} failed: {result.stdout}{result.stderr}"
    return json.loads(result.stdout)


def served_counts(router: RouterProcess) -> dict[str, int]:
    """Replies each resource has given through the router, as the control socket reports them."""
    listing = control(router, "resources", COMPONENT)
    return {entry["resource"]: int(entry["served"]) for entry in listing["resources"]}


def translated_senders(service) -> list[str]:
    """The `from` of every request the resource was handed."""
    return [sender for sender, _, _ in service.requests]


def jat_of(translated: str) -> str:
    prefix = COMPONENT + "/"
    assert translated.startswith(prefix), f"the request came from {translated!r}, not from {prefix}<JAT>"
    return translated[len(prefix):]


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jat_for_bytes(data: bytes) -> str:
    """Bytes in unpadded base64url, as a JAT's parts are written."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def readable_forms(jat: str) -> list[bytes]:
    """The JAT as text and every decoding a curious client would try."""
    forms = [jat.encode("utf-8")]
    for part in [jat, *jat.split(".")]:
        for decode in (b64url_decode, lambda t: base64.b64decode(t + "=" * (-len(t) % 4)), binascii.unhexlify):
            try:
                forms.append(decode(part))
            except (ValueError, binascii.Error):
                pass
    return forms


def ask(requester, count: int, label: str) -> list[str]:
    """Sends `count` requests one after another; returns the resource that answered each."""
    replies = [requester.request(text=f"{label} {n}") for n in range(count)]
    assert [r.type for r in replies] == ["result"] * count, [r for r in replies if r.type != "result"]
    return [r.resource for r in replies]


# --------------------------------------------------------------------------------------------
# Strategies


def test_round_robin_alternates_between_two_resources(routers, clients, target):
    router, _ = start_serving(routers, clients, target, strategy="name: round-robin")
    requester = clients.requester()

    answered_by = ask(requester, 10, "round robin")

    # 1. Strictly alternating, whichever resource comes first.
    first, second = answered_by[0], ("b" if answered_by[0] == "a" else "a")
    assert answered_by == [first, second] * 5, answered_by
    # 2. The router's own counters agree.
    assert served_counts(router) == {"a": 5, "b": 5}


def test_least_pending_sends_most_requests_to_the_fast_resource(routers, clients, target):
    router, _ = start_serving(routers, clients, target, resources=("fast", "slow"),
                              services={"slow": {"mode": "delay", "delay": 1.5}},
                              strategy="name: least-pending")
    requester = clients.requester()

    # Eight requesters' worth of concurrency: each worker sends its next request when the last
    # one is answered, up to 12 requests or until the deadline. A worker that lands on the slow
    # resource waits 1.5 s; one on the fast resource goes on at once. (Random or round-robin
    # would give the slow resource about half of all requests whatever the timing.)
    deadline = time.monotonic() + 4.0

    def worker(number: int) -> list:
        replies = []
        for n in range(12):
            if time.monotonic() >= deadline:
                break
            replies.append(requester.request(text=f"worker {number} request {n}", timeout=8))
        return replies

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        replies = [reply for replies in pool.map(worker, range(8)) for reply in replies]

    assert replies and all(r.type == "result" for r in replies), [r for r in replies if r.type != "result"]
    answered_by = Counter(r.resource for r in replies)
    share = answered_by["fast"] / len(replies)
    assert share >= 0.7, f"the fast resource answered {share:.0%} of {len(replies)} requests: {dict(answered_by)}"
    counts = served_counts(router)
    assert counts.get("fast", 0) == answered_by["fast"] and counts.get("slow", 0) == answered_by["slow"], counts


@pytest.fixture(scope="module")
def sticky_accounts(prosody_server):
    for account in STICKY_ACCOUNTS:
        prosody_server.register(account)
    return STICKY_ACCOUNTS


def test_sticky_by_sender_keeps_each_requester_on_one_resource_and_moves_only_those_that_lost_it(
        routers, clients, target, sticky_accounts):
    router, services = start_serving(routers, clients, target, strategy="name: sticky-by-sender\nkey: bare")

    # 1. Each requester keeps one resource over six requests. More requesters join (up to six)
    #    only if the first three all landed on the same resource, so that both are in use.
    placed: dict[str, str] = {}
    requesters = {}
    for account in sticky_accounts:
        if len(placed) >= 3 and len(set(placed.values())) == 2:
            break
        requesters[account] = clients.requester(account, "desk")
        answered_by = ask(requesters[account], 6, f"{account} before")
        assert len(set(answered_by)) == 1, f"{account} was answered by {answered_by}"
        placed[account] = answered_by[0]
    assert set(placed.values()) == {"a", "b"}, f"six requesters all landed on one resource: {placed}"
    # 2. With key: bare, another device of the same user lands on the same resource.
    first_account = next(iter(placed))
    second_device = clients.requester(first_account, "tablet")
    assert set(ask(second_device, 3, "second device")) == {placed[first_account]}

    # 3. The resource of the first requester goes offline: its requesters move to the other one,
    #    the others stay where they were.
    leaving = placed[first_account]
    staying = "b" if leaving == "a" else "a"
    mark = router.mark()
    services[leaving].disconnect()
    router.wait_for_log(rf'msg="resource unavailable".*resource={leaving}(\s|$)', since=mark)
    for account, requester in requesters.items():
        answered_by = ask(requester, 6, f"{account} while {leaving} is away")
        assert set(answered_by) == {staying}, f"{account} (was on {placed[account]}) got {answered_by}"

    # 4. It comes back: its requesters return to it, the others still do not move.
    mark = router.mark()
    clients.service(target, leaving)
    router.wait_for_resources(COMPONENT, {leaving}, since=mark)
    for account, requester in requesters.items():
        answered_by = ask(requester, 3, f"{account} after {leaving} returned")
        assert set(answered_by) == {placed[account]}, f"{account} (was on {placed[account]}) got {answered_by}"


# --------------------------------------------------------------------------------------------
# Encoders


def encoder_setup(name: str, tmp_path: Path) -> tuple[str, Optional[dict[str, str]]]:
    """The `encoder:` YAML for `name` and the environment the router needs for its key."""
    if name == "hmac":
        return "name: hmac\nkey: { env: CPR_TEST_HMAC_KEY }", {"CPR_TEST_HMAC_KEY": HMAC_KEY}
    if name == "sealed":
        key_file = tmp_path / "sealed.key"
        key_file.write_text(SEALED_KEY + "\n", encoding="utf-8")
        return f'name: sealed\nkey: {{ file: "{key_file}" }}', None
    if name == "table":
        return "name: table\nmax_entries: 1000\nidle_expiry: 5m", None
    return f"name: {name}", None


@pytest.mark.parametrize("encoder", ["base64url", "hmac", "table", "sealed"])
def test_each_encoder_works_through_the_server(routers, clients, target, tmp_path, encoder):
    encoder_yaml, env = encoder_setup(encoder, tmp_path)
    _, services = start_serving(routers, clients, target, resources=("a",), encoder=encoder_yaml, env=env)
    requester = clients.requester()
    other = clients.requester(FORGER_ACCOUNT, "laptop")

    # 1. Requests to the component and to a JID at its domain are answered from that address.
    replies = [requester.request(to=to, text=f"{encoder} {n}")
               for n, to in enumerate([COMPONENT, f"someone@{COMPONENT}", COMPONENT])]
    other_reply = other.request(text=f"{encoder} other")
    assert [r.type for r in replies] == ["result"] * 3, replies
    assert [r.from_jid for r in replies] == [COMPONENT, f"someone@{COMPONENT}", COMPONENT]
    assert [r.text for r in replies] == [f"{encoder} {n}" for n in range(3)]
    assert other_reply.type == "result" and other_reply.text == f"{encoder} other", other_reply

    # 2. The resource saw every request from proxy.localhost/<JAT>: one JAT per sender.
    senders = translated_senders(services["a"])
    assert len(senders) == 4, services["a"].requests
    jats = [jat_of(sender) for sender in senders]
    assert len(set(jats[:3])) == 1, f"one sender got several JATs: {jats[:3]}"
    assert jats[3] != jats[0], "two senders got the same JAT"
    jat = jats[0]
    assert len(jat.encode("utf-8")) <= 1023

    # 3. What the JAT tells the service about the sender.
    if encoder == "base64url":
        assert b64url_decode(jat).decode("utf-8") == requester.jid
        assert jat == jat_for(requester.jid)
    elif encoder == "hmac":
        sender_part, _, tag = jat.partition(".")
        assert b64url_decode(sender_part).decode("utf-8") == requester.jid, jat
        assert tag and len(b64url_decode(tag)) == 12, f"expected a 12-byte tag (the default): {jat}"
    else:
        for secret in (requester.jid, f"{REQUESTER_ACCOUNT}@{DOMAIN}", REQUESTER_ACCOUNT, "phone"):
            leaked = [form for form in readable_forms(jat) if secret.encode("utf-8") in form]
            assert not leaked, f"the {encoder} JAT {jat!r} shows {secret!r}"


def test_sealed_jat_is_the_same_after_the_router_restarts(routers, clients, target, tmp_path):
    encoder_yaml, env = encoder_setup("sealed", tmp_path)
    first, services = start_serving(routers, clients, target, resources=("a",), encoder=encoder_yaml, env=env)
    requester = clients.requester()
    assert requester.request(text="before").type == "result"

    assert first.stop() == 0
    second = start_router(routers, target, encoder=encoder_yaml, env=env)
    second.wait_for_resources(COMPONENT, {"a"})
    reply = requester.request(text="after")

    assert reply.type == "result", reply
    before, after = (jat_of(sender) for sender in translated_senders(services["a"]))
    assert before == after


LONG_RESOURCE = "long-" + "é" * 20 + "x" * (1000 - 5 - 40)


@pytest.mark.parametrize("encoder", ["table", "base64url", "hmac", "sealed"])
def test_requester_with_a_resource_of_1000_bytes(routers, clients, target, tmp_path, encoder):
    assert len(LONG_RESOURCE.encode("utf-8")) == 1000
    encoder_yaml, env = encoder_setup(encoder, tmp_path)
    _, services = start_serving(routers, clients, target, resources=("a",), encoder=encoder_yaml, env=env)
    requester = clients.requester(resource=LONG_RESOURCE)
    assert requester.jid == f"{REQUESTER_ACCOUNT}@{DOMAIN}/{LONG_RESOURCE}", "Prosody changed the long resource"

    reply = requester.request(text="from a long address", timeout=5)

    if encoder == "table":
        # 1. A token is short whatever the sender: served.
        assert reply.type == "result", reply
        assert reply.from_jid == COMPONENT
        assert reply.text == "from a long address"
        assert len(jat_of(translated_senders(services["a"])[0])) < 64
    else:
        # 2. The JAT would pass 1023 bytes: a clear error, and nothing reaches the service.
        assert reply.type == "error", f"expected not-acceptable, got {reply}"
        assert reply.condition == "not-acceptable", reply.xml
        assert reply.from_jid == COMPONENT
        text = ET.fromstring(reply.xml).find(f"{{jabber:client}}error/{{{STANZAS_NS}}}text")
        assert text is not None and (text.text or "").strip(), f"the error carries no text: {reply.xml}"
        assert services["a"].requests == []


def test_hmac_jat_forged_by_the_target_is_not_delivered(routers, clients, target, tmp_path):
    encoder_yaml, env = encoder_setup("hmac", tmp_path)
    router, services = start_serving(routers, clients, target, resources=("a",), encoder=encoder_yaml, env=env,
                                     services={"a": {"mode": "delay", "delay": 1.5}})
    service = services["a"]
    victim = clients.requester()
    other = clients.requester(FORGER_ACCOUNT, "laptop")

    # 1. Both users ask; the resource holds their requests for 1.5 s.
    other_pending = other.request_in_background(text="other question", timeout=10)
    victim_pending = victim.request_in_background(text="victim question", timeout=10)
    deadline = time.monotonic() + 5
    while len(service.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(service.requests) == 2, service.requests
    by_text = {text: (sender, iq_id) for sender, iq_id, text in service.requests}
    victim_jat, victim_id = jat_of(by_text["victim question"][0]), by_text["victim question"][1]
    other_jat = jat_of(by_text["other question"][0])
    victim_part = jat_for(victim.jid)
    assert victim_jat.startswith(victim_part + "."), victim_jat

    # 2. The target answers the victim's request first, to addresses it made up: the victim's
    #    part with a garbage tag, with no tag, and with the tag of the other user's valid JAT.
    forged = [
        victim_part + "." + jat_for_bytes(b"\x00" * 12),
        victim_part,
        victim_part + "." + other_jat.partition(".")[2],
    ]
    assert victim_jat not in forged
    mark = router.mark()
    for n, jat in enumerate(forged):
        service.send_raw(f"<iq type='result' to='{COMPONENT}/{jat}' id='{victim_id}'>"
                         f"<query xmlns='{ECHO_NS}' resource='forged'>forged answer {n}</query></iq>")

    # 3. Only the real answers come back; the router logs each forgery as a dropped reply.
    reply = victim_pending.result(timeout=15)
    assert reply.type == "result", reply
    assert (reply.resource, reply.text) == ("a", "victim question"), reply
    assert other_pending.result(timeout=15).text == "other question"
    time.sleep(0.3)
    assert not [stanza for stanza in victim.received if "forged" in stanza], victim.received
    dropped = [line for line in router.log_text()[mark:].splitlines()
               if 'msg="dropped reply to an address the encoder did not make"' in line]
    assert len(dropped) == 3, router.tail()
    assert all(HMAC_KEY not in line for line in router.log_text().splitlines())
    status = control(router, "status")
    assert [route["dropped_replies"] for route in status["routes"]] == [3], status


# --------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize("strategy, key, reason", [
    ("name: least-pending\nscan_limit: -1", "scan_limit", "out of range"),
    ("name: round-robin\nscan_limit: 4", "scan_limit", "unknown key"),
    ("name: sticky-by-sender\nkey: middle", "key", "bare or full"),
    ("name: random\naway: sometimes", "away", "use, avoid or exclude"),
    ("name: least-pending\nscan_limt: 4", "scan_limt", "unknown key"),
], ids=["scan_limit-negative", "round-robin-scan_limit", "sticky-key-middle", "away-sometimes", "scan_limit-typo"])
def test_bad_strategy_option_fails_check_with_file_line_and_key(tmp_path, strategy, key, reason):
    text = with_plugins(router_config_yaml(COMPONENT, 5347, COMPONENT_SECRET, f"service@{DOMAIN}"),
                        strategy, "name: base64url")
    path = tmp_path / "router.yaml"
    path.write_text(text, encoding="utf-8")
    option = strategy.splitlines()[1]
    line = 1 + text.splitlines().index("      " + option)

    result = run_check(path)

    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert f"{path}:{line}" in output, output
    assert f"strategy.{key}" in output, output
    assert reason in output, output


@pytest.mark.parametrize("encoder, env, key, reason", [
    ("name: hmac\nkey: { env: CPR_TEST_SHORT_KEY }", {"CPR_TEST_SHORT_KEY": "short key"}, "key", "16 bytes"),
    ("name: sealed\nkey: \"an inline key that is long enough\"", None, "key", "not written in the YAML"),
    ("name: hmac\nkey: { env: CPR_TEST_HMAC_KEY }\ntag_bytes: 4", {"CPR_TEST_HMAC_KEY": HMAC_KEY},
     "tag_bytes", "out of range"),
    ("name: table\nmax_entries: 0", None, "max_entries", "out of range"),
], ids=["hmac-short-key", "sealed-inline-key", "hmac-tag_bytes-4", "table-max_entries-0"])
def test_bad_encoder_option_fails_check_with_file_line_and_key(tmp_path, encoder, env, key, reason):
    text = with_plugins(router_config_yaml(COMPONENT, 5347, COMPONENT_SECRET, f"service@{DOMAIN}"),
                        "name: random", encoder)
    path = tmp_path / "router.yaml"
    path.write_text(text, encoding="utf-8")
    option = next(l for l in encoder.splitlines() if l.startswith(key + ":"))
    line = 1 + text.splitlines().index("      " + option)

    result = run_check(path, env)

    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert f"{path}:{line}" in output, output
    assert f"encoder.{key}" in output, output
    assert reason in output, output
    if env:
        assert all(value not in output for value in env.values()), "check printed key material"
