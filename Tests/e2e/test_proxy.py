"""End-to-end behaviour of the router: a real Prosody, real slixmpp clients, the built routerctl.

Each test gets a fresh target account (so the first subscription is negotiated from scratch),
its own router and its own clients; see conftest.py.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from conftest import FORGER_ACCOUNT
from harness import COMPONENT, jat_for


def start_serving(routers, clients, target, resources=("a", "b"), request_timeout="10s", **service_options):
    """Starts a router for `target` and service resources, and waits until the router knows them."""
    router = routers.start(target, request_timeout=request_timeout)
    services = {name: clients.service(target, name, **service_options) for name in resources}
    router.wait_for_resources(COMPONENT, set(resources))
    return router, services


def wait_until_received(service, timeout=5.0):
    """Waits until `service` has been handed at least one request."""
    deadline = time.monotonic() + timeout
    while not service.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.requests, f"no request reached resource {service.resource} within {timeout}s"


def test_requests_are_answered_through_the_proxy_and_spread_over_two_resources(routers, clients, target):
    router, services = start_serving(routers, clients, target)
    requester = clients.requester()

    replies = [requester.request(text=f"request {n}") for n in range(30)]

    # 1. Every request got the echo of its own text as a result.
    assert [r.type for r in replies] == ["result"] * 30, replies
    assert [r.text for r in replies] == [f"request {n}" for n in range(30)]
    # 2. Both resources took a share (random: all 30 on one resource has odds 2 in 2^30).
    answered_by = Counter(r.resource for r in replies)
    assert set(answered_by) == {"a", "b"}, answered_by
    # 3. The resources saw the request with the router's translated sender and the same id.
    expected_from = f"{COMPONENT}/{jat_for(requester.jid)}"
    seen = [request for service in services.values() for request in service.requests]
    assert {sender for sender, _, _ in seen} == {expected_from}
    assert sorted(iq_id for _, iq_id, _ in seen) == sorted(r.id for r in replies)


def test_concurrent_requests_all_get_their_own_reply(routers, clients, target):
    start_serving(routers, clients, target, mode="delay", delay=0.2)
    requester = clients.requester()

    replies = requester.request_many(40)

    assert [r.type for r in replies] == ["result"] * 40, [r for r in replies if r.type != "result"]
    assert [r.text for r in replies] == [f"request {n}" for n in range(40)]


@pytest.mark.parametrize("addressed", [COMPONENT, f"someone@{COMPONENT}"])
def test_reply_comes_from_the_address_the_requester_used(routers, clients, target, addressed):
    start_serving(routers, clients, target, resources=("a",))
    requester = clients.requester()

    reply = requester.request(to=addressed, text="who answers?")

    assert reply.type == "result", reply
    assert reply.from_jid == addressed
    assert reply.text == "who answers?"


def test_traffic_continues_on_the_other_resource_when_one_goes_offline(routers, clients, target):
    router, services = start_serving(routers, clients, target)
    requester = clients.requester()
    mark = router.mark()

    services["b"].disconnect()
    router.wait_for_log(r'msg="resource unavailable".*resource=b(\s|$)', since=mark)
    replies = [requester.request(text=f"after b left {n}") for n in range(10)]

    assert [r.type for r in replies] == ["result"] * 10, replies
    assert {r.resource for r in replies} == {"a"}


def test_no_resource_online_gives_service_unavailable(routers, clients, target):
    routers.start(target)
    requester = clients.requester()

    reply = requester.request(text="anyone?")

    assert reply.type == "error", reply
    assert reply.condition == "service-unavailable", reply.xml
    assert reply.from_jid == COMPONENT


def test_resource_that_never_answers_gives_remote_server_timeout(routers, clients, target):
    start_serving(routers, clients, target, resources=("a",), request_timeout="2s", mode="never")
    requester = clients.requester()

    started = time.monotonic()
    reply = requester.request(text="are you there?", timeout=10)
    waited = time.monotonic() - started

    assert reply.type == "error", reply
    assert reply.condition == "remote-server-timeout", reply.xml
    assert reply.from_jid == COMPONENT
    assert 1.5 <= waited <= 5.0, f"the timeout is 2s, the error came after {waited:.2f}s"


def test_resource_going_offline_with_a_request_gives_recipient_unavailable(routers, clients, target):
    _, services = start_serving(routers, clients, target, resources=("a",), mode="never")
    requester = clients.requester()
    pending = requester.request_in_background(text="hold this", timeout=10)
    wait_until_received(services["a"])

    services["a"].disconnect()
    reply = pending.result(timeout=15)

    assert reply.type == "error", reply
    assert reply.condition == "recipient-unavailable", reply.xml
    assert reply.from_jid == COMPONENT


def test_reply_forged_by_another_account_is_not_delivered(routers, clients, target):
    _, services = start_serving(routers, clients, target, resources=("a",), mode="delay", delay=1.5)
    requester = clients.requester()
    forger = clients.requester(FORGER_ACCOUNT, "laptop")

    # 1. The requester asks; the resource will answer after 1.5 s.
    pending = requester.request_in_background(text="the real question", timeout=10)
    wait_until_received(services["a"])
    translated_sender, iq_id, _ = services["a"].requests[0]
    # 2. The forger computes the same translated address the resource saw, and answers first.
    forged_to = f"{COMPONENT}/{jat_for(requester.jid)}"
    assert translated_sender == forged_to
    forger.send_raw(f"<iq type='result' to='{forged_to}' id='{iq_id}'>"
                    f"<query xmlns='urn:example:echo' resource='forged'>forged answer</query></iq>")
    # 3. Only the real answer reaches the requester.
    reply = pending.result(timeout=15)
    assert reply.type == "result", reply
    assert reply.resource == "a"
    assert reply.text == "the real question"
    time.sleep(0.5)
    assert not [stanza for stanza in requester.received if "forged" in stanza], requester.received


def test_requester_with_spaces_slashes_at_signs_and_non_ascii_in_its_resource_is_served(
        routers, clients, target):
    _, services = start_serving(routers, clients, target, resources=("a",))
    requester = clients.requester(resource="my phone/desk@home ünïcødé 中文")
    assert requester.jid.endswith("/my phone/desk@home ünïcødé 中文"), requester.jid

    reply = requester.request(text="ça marche? <&>")

    assert reply.type == "result", reply
    assert reply.text == "ça marche? <&>"
    assert reply.from_jid == COMPONENT
    assert services["a"].requests[0][0] == f"{COMPONENT}/{jat_for(requester.jid)}"


def test_message_to_the_component_gets_feature_not_implemented(routers, clients, target):
    start_serving(routers, clients, target, resources=("a",))
    requester = clients.requester()

    requester.send_raw(f"<message to='{COMPONENT}' id='m1' type='chat'><body>hello</body></message>")

    error = requester.wait_for_received(r"<message[^>]*type=\"error\"")
    assert "feature-not-implemented" in error, error


def test_router_restarted_learns_the_resources_of_an_already_subscribed_target(routers, clients, target):
    first, _ = start_serving(routers, clients, target)
    assert first.stop() == 0
    second = routers.start(target)

    second.wait_for_resources(COMPONENT, {"a", "b"})
    reply = clients.requester().request(text="after the router restarted")

    assert reply.type == "result", reply


def test_router_reconnects_after_prosody_restarts_and_serves_again(routers, clients, target, prosody):
    router, _ = start_serving(routers, clients, target)
    assert clients.requester().request().type == "result"
    mark = router.mark()

    # 1. Prosody goes away under the router, taking every client session with it.
    prosody.restart()
    # 2. The router connects and authenticates again on its own.
    router.wait_for_log(r'msg="component authenticated"', timeout=20, since=mark)
    # 3. The resources come back and the router learns them again.
    for name in ("a", "b"):
        clients.service(target, name)
    router.wait_for_resources(COMPONENT, {"a", "b"}, since=mark)
    requester = clients.requester(resource="after-restart")
    replies = [requester.request(text=f"after restart {n}") for n in range(20)]

    assert [r.type for r in replies] == ["result"] * 20, replies
    assert {r.resource for r in replies} == {"a", "b"}


def test_wrong_secret_is_logged_as_not_authorized_and_retried(routers, target):
    router = routers.start(target, secret="not the secret", wait_authenticated=False)

    first = router.wait_for_log(r"not-authorized", timeout=10)
    mark = router.mark()
    router.wait_for_log(r"not-authorized", timeout=10, since=mark)

    assert router.running, "a wrong secret must not make the router exit"
    assert "component authenticated" not in router.log_text()
    assert first


def test_sigterm_answers_pending_requests_and_exits_zero(routers, clients, target):
    router, services = start_serving(routers, clients, target, resources=("a",), mode="never")
    requester = clients.requester()
    pending = requester.request_in_background(text="left hanging", timeout=10)
    wait_until_received(services["a"])

    code = router.stop()
    reply = pending.result(timeout=15)

    assert code == 0, router.tail()
    assert reply.type == "error", reply
    assert reply.from_jid == COMPONENT
