"""`routerctl` controlling a running router, end to end: a real Prosody, real slixmpp clients,
the built routerctl talking to the router's control socket.

Each test starts its own router with a control socket in a folder of its own (see
`Routers.start_config` in conftest.py), and checks what an operator would check: the exit code,
the one line of output, `--json` results, and what the requesters get.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import FORGER_ACCOUNT, REQUESTER_ACCOUNT
from harness import (
    COMPONENT, COMPONENT_SECRET, DOMAIN, ProsodyServer, free_port, router_binary, yaml_string,
)

# The second component address the Prosody of this module declares, for the reload test.
SECOND_COMPONENT = "proxy2.localhost"
SECOND_SECRET = "second s3cret"


@pytest.fixture(scope="module")
def prosody_server(tmp_path_factory):
    """Overrides conftest's Prosody for this module only: one that also declares
    SECOND_COMPONENT, so that a reload can add a route for it."""
    server = ProsodyServer(tmp_path_factory.mktemp("prosody-control"),
                           extra_components={SECOND_COMPONENT: SECOND_SECRET})
    for account in (REQUESTER_ACCOUNT, FORGER_ACCOUNT):
        server.register(account)
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------------------------
# Configuration and routerctl


def route_yaml(target: str, port: int, component: str = COMPONENT, secret: str = COMPONENT_SECRET,
               strategy: str = "round-robin", request_timeout: str = "10s") -> str:
    """One entry of `routes:`, as config.example.yaml documents it."""
    return f"""  - component: {component}
    server:
      host: 127.0.0.1
      port: {port}
    secret: {yaml_string(secret)}
    target: {target}@{DOMAIN}
    strategy:
      name: {strategy}
    encoder:
      name: base64url
    request_timeout: {request_timeout}
    reconnect:
      initial: 200ms
      max: 2s
"""


def config_yaml(control_socket: Path, routes: list[str], metrics_port: Optional[int] = None) -> str:
    metrics = f'metrics:\n  listen: "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    return (f"log_level: debug\ncontrol:\n  socket: {yaml_string(str(control_socket))}\n{metrics}"
            f"routes:\n{''.join(routes)}")


def line_of(text: str, fragment: str) -> tuple[int, int]:
    """The 1-based line and column where `fragment` first occurs in `text`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number, line.index(fragment) + 1
    raise AssertionError(f"{fragment!r} is not in the configuration")


def routerctl(*args: str, socket_path: Optional[Path] = None, env: Optional[dict[str, str]] = None,
              user: Optional[str] = None, timeout: float = 20) -> subprocess.CompletedProcess:
    """Runs the built routerctl; `user` runs it as another user (setpriv)."""
    command = [str(router_binary()), *args]
    if socket_path is not None:
        command += ["--socket", str(socket_path)]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user_group(user)}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def user_group(user: str) -> str:
    return "nogroup" if user == "nobody" else user


def ctl_json(socket_path: Path, *args: str) -> dict:
    """`routerctl ARGS --json`, which must succeed and print one JSON object."""
    result = routerctl(*args, "--json", socket_path=socket_path)
    assert result.returncode == 0, f"routerctl {' '.join(args)}: exit {result.returncode}: {result.stderr}"
    return json.loads(result.stdout)


def route_status(socket_path: Path, component: str = COMPONENT) -> dict:
    routes = ctl_json(socket_path, "status")["routes"]
    matching = [route for route in routes if route["route"] == component]
    assert len(matching) == 1, routes
    return matching[0]


def resource_table(socket_path: Path, component: str = COMPONENT) -> dict[str, dict]:
    """`routerctl resources ROUTE --json`, keyed by resource name."""
    result = ctl_json(socket_path, "resources", component)
    return {resource["resource"]: resource for resource in result["resources"]}


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {text!r}"
    return lines[0]


# --------------------------------------------------------------------------------------------
# Starting a router with services


class Setup:
    """A running router with a control socket, its service resources and a requester."""

    def __init__(self, routers, clients, prosody, target, resources=("a", "b"), strategy="round-robin",
                 metrics_port: Optional[int] = None, request_timeout="10s", **service_options):
        self.socket = routers.control_socket()
        self.prosody = prosody
        self.target = target
        self.metrics_port = metrics_port
        config = config_yaml(self.socket, [route_yaml(target, prosody.component_port, strategy=strategy,
                                                      request_timeout=request_timeout)], metrics_port)
        self.router = routers.start_config(config)
        self.services = {name: clients.service(target, name, **service_options) for name in resources}
        self.router.wait_for_resources(COMPONENT, set(resources))
        self.requester = clients.requester()

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return routerctl(*args, socket_path=self.socket)

    def answered_by(self, count: int, prefix: str = "request") -> list[str]:
        """Sends `count` requests one after the other; returns which resource answered each."""
        replies = [self.requester.request(text=f"{prefix} {n}") for n in range(count)]
        assert [r.type for r in replies] == ["result"] * count, [r for r in replies if r.type != "result"]
        return [r.resource for r in replies]


class SteadyLoad:
    """A requester sending one request every `interval` from a thread of its own until stopped;
    records when each was sent and when its reply came."""

    def __init__(self, requester, interval: float = 0.04, timeout: float = 15.0):
        self.requester = requester
        self.interval = interval
        self.timeout = timeout
        self.sent: list[tuple[float, str, object]] = []     # (sent at, text, future of Reply)
        self.replied_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            text = f"load {number}"
            number += 1
            sent_at = time.monotonic()
            future = self.requester.request_in_background(text=text, timeout=self.timeout)
            future.add_done_callback(lambda _f, text=text: self.replied_at.__setitem__(text, time.monotonic()))
            self.sent.append((sent_at, text, future))
            self._stop.wait(self.interval)

    def start(self) -> "SteadyLoad":
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, float, object]]:
        """Stops sending, waits for every reply; returns (sent at, replied at, Reply) per request."""
        self._stop.set()
        self._thread.join(timeout=5)
        outcome = []
        for sent_at, text, future in self.sent:
            reply = future.result(timeout=self.timeout + 5)
            assert reply.text == text or reply.type != "result", (text, reply)
            outcome.append((sent_at, self.replied_at.get(text, time.monotonic()), reply))
        return outcome


# --------------------------------------------------------------------------------------------
# 1. drain


def test_drain_under_steady_load_sends_new_requests_elsewhere_and_answers_those_in_flight(
        routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target, mode="delay", delay=0.6)
    load = SteadyLoad(setup.requester).start()
    time.sleep(1.0)

    # 1. Drain `a` while it holds requests (each takes 0.6 s, one is sent every 40 ms).
    drain_started = time.monotonic()
    result = setup.ctl("drain", COMPONENT, "a")
    drain_done = time.monotonic()
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == f"{COMPONENT}/a: draining"
    # 2. `resources` shows it draining with the requests it still holds.
    table = resource_table(setup.socket)
    assert table["a"]["state"] == "draining", table
    assert table["a"]["pending"] >= 1, table
    assert table["b"]["state"] == "ready", table
    # 3. Once its requests are answered it holds none, and stays draining.
    time.sleep(1.5)
    table = resource_table(setup.socket)
    assert (table["a"]["state"], table["a"]["pending"]) == ("draining", 0), table
    assert route_status(setup.socket)["resources_ready"] == 1
    # 4. `ready` puts it back into rotation.
    ready_started = time.monotonic()
    result = setup.ctl("ready", COMPONENT, "a")
    ready_done = time.monotonic()
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == f"{COMPONENT}/a: ready"
    time.sleep(1.0)
    outcome = load.stop()

    # 5. Nothing was lost: every request got its own echo.
    assert [reply.type for _, _, reply in outcome] == ["result"] * len(outcome), \
        [reply for _, _, reply in outcome if reply.type != "result"]
    # 6. What `a` held at the drain was answered by `a`, after the drain.
    held = [(sent, replied) for sent, replied, reply in outcome if sent < drain_started and reply.resource == "a"]
    assert any(replied > drain_done for _, replied in held), "no request was in flight at `a` during the drain"
    # 7. Requests sent while `a` drained all went to `b`.
    while_draining = [reply.resource for sent, _, reply in outcome if drain_done < sent < ready_started]
    assert len(while_draining) >= 20, len(while_draining)
    assert set(while_draining) == {"b"}, Counter(while_draining)
    # 8. After `ready`, round robin shares them again.
    after_ready = Counter(reply.resource for sent, _, reply in outcome if sent > ready_done)
    assert after_ready["a"] >= sum(after_ready.values()) // 3, after_ready


# --------------------------------------------------------------------------------------------
# 2. maint and ready


def test_maint_keeps_a_resource_out_across_its_reconnect_until_ready(routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target)

    # 1. maint takes `a` out.
    result = setup.ctl("maint", COMPONENT, "a")
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == f"{COMPONENT}/a: maint"
    assert set(setup.answered_by(10, "during maint")) == {"b"}
    status = route_status(setup.socket)
    assert (status["resources_ready"], status["resources_online"]) == (1, 2), status
    # 2. `a` goes offline and comes back: the state set by hand stays with it.
    mark = setup.router.mark()
    setup.services["a"].disconnect()
    setup.router.wait_for_log(r'msg="resource unavailable".*resource=a(\s|$)', since=mark)
    offline = resource_table(setup.socket)["a"]
    assert (offline["online"], offline["state"]) == (False, "maint"), offline
    clients.service(target, "a")
    setup.router.wait_for_resources(COMPONENT, {"a"}, since=mark)
    back = resource_table(setup.socket)["a"]
    assert (back["online"], back["state"]) == (True, "maint"), back
    assert set(setup.answered_by(10, "after reconnect")) == {"b"}
    # 3. ready restores it.
    result = setup.ctl("ready", COMPONENT, "a")
    assert result.returncode == 0, result.stderr
    assert resource_table(setup.socket)["a"]["state"] == "ready"
    assert Counter(setup.answered_by(10, "after ready")) == {"a": 5, "b": 5}


# --------------------------------------------------------------------------------------------
# 3. weight


@pytest.mark.parametrize("strategy", ["round-robin", "random"])
def test_weight_change_shifts_the_share(routers, clients, prosody, target, strategy):
    setup = Setup(routers, clients, prosody, target, strategy=strategy)

    result = setup.ctl("weight", COMPONENT, "a", "3")

    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == f"{COMPONENT}/a: weight 3"
    table = resource_table(setup.socket)
    assert (table["a"]["weight"], table["b"]["weight"]) == (3, 1), table
    if strategy == "round-robin":
        # Smooth weighted round robin: a a b a, over and over, so exactly 3 to 1.
        answered = setup.answered_by(80)
        assert Counter(answered) == {"a": 60, "b": 20}, Counter(answered)
        assert "b, b" not in ", ".join(answered), answered
    else:
        # 200 weighted random picks: `a` expects 150 (sd 6.1); equal weights would give 100 (sd 7.1).
        answered = setup.answered_by(200)
        assert 125 <= Counter(answered)["a"] <= 175, Counter(answered)


# --------------------------------------------------------------------------------------------
# 4. strategy


def test_live_strategy_switch_to_round_robin_alternates_strictly(routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target, strategy="random")
    assert route_status(setup.socket)["strategy"] == "random"

    # 1. An unknown name is refused and changes nothing.
    refused = setup.ctl("strategy", COMPONENT, "fastest")
    assert refused.returncode == 1, refused
    assert "fastest" in one_line(refused.stderr)
    assert route_status(setup.socket)["strategy"] == "random"
    # 2. The switch.
    result = setup.ctl("strategy", COMPONENT, "round-robin")
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == f"{COMPONENT}: strategy round-robin"
    assert route_status(setup.socket)["strategy"] == "round-robin"
    assert "round-robin" in setup.ctl("status").stdout
    # 3. Afterwards: strict alternation (random would alternate 20 times in a row with odds 2^-19).
    answered = setup.answered_by(20)
    assert all(first != second for first, second in zip(answered, answered[1:])), answered
    assert set(answered) == {"a", "b"}


# --------------------------------------------------------------------------------------------
# 5. reload adding a route


def test_reload_adds_a_second_route_while_a_slow_request_on_the_first_is_in_flight(
        routers, clients, prosody, target):
    second_target = f"{target}-second"
    prosody.register(second_target)
    setup = Setup(routers, clients, prosody, target, resources=("a",), mode="delay", delay=4.0)
    first_route = route_yaml(target, prosody.component_port)
    assert first_route in setup.router.config_path.read_text()

    # 1. A slow request is in flight on the first route.
    slow = setup.requester.request_in_background(text="slow one", timeout=15)
    deadline = time.monotonic() + 5
    while not setup.services["a"].requests and time.monotonic() < deadline:
        time.sleep(0.05)
    pending = ctl_json(setup.socket, "pending", COMPONENT)["pending"]
    assert [(p["sender"], p["resource"]) for p in pending] == [(setup.requester.jid, "a")], pending
    clients.service(second_target, "x")
    # 2. The file gains a route for the second component; reload.
    mark = setup.router.mark()
    second_route = route_yaml(second_target, prosody.component_port, component=SECOND_COMPONENT,
                              secret=SECOND_SECRET)
    setup.router.config_path.write_text(config_yaml(setup.socket, [first_route, second_route]))
    result = setup.ctl("reload")
    assert result.returncode == 0, result.stderr
    assert not slow.done(), "the slow request was answered before the reload; it proves nothing"
    lines = result.stdout.splitlines()
    assert f"added: {SECOND_COMPONENT}" in lines, result.stdout
    assert f"unchanged: {COMPONENT}" in lines, result.stdout
    # 3. The new route connects and serves.
    setup.router.wait_for_log(rf'msg="component authenticated".*route={re.escape(SECOND_COMPONENT)}(\s|$)',
                              since=mark)
    setup.router.wait_for_resources(SECOND_COMPONENT, {"x"}, since=mark)
    reply = setup.requester.request(to=SECOND_COMPONENT, text="to the new route")
    assert (reply.type, reply.resource, reply.from_jid) == ("result", "x", SECOND_COMPONENT), reply
    # 4. The slow request on the first route is still answered, by its resource.
    answer = slow.result(timeout=15)
    assert (answer.type, answer.resource, answer.text) == ("result", "a", "slow one"), answer
    # 5. The first route kept its connection.
    first = route_status(setup.socket)
    assert (first["connection"], first["reconnects"]) == ("authenticated", 0), first
    assert len(re.findall(rf'msg="component authenticated".*route={re.escape(COMPONENT)}(\s|$)',
                          setup.router.log_text(), re.M)) == 1
    assert {r["route"] for r in ctl_json(setup.socket, "status")["routes"]} == {COMPONENT, SECOND_COMPONENT}


# --------------------------------------------------------------------------------------------
# 6. reload with a broken file


def stable_fields(route: dict) -> dict:
    return {key: route[key] for key in ("route", "target", "connection", "strategy", "encoder", "reconnects",
                                        "resources_ready", "resources_online")}


def test_reload_of_a_broken_file_changes_nothing_by_routerctl_or_sighup(routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target, strategy="random")
    good = setup.router.config_path.read_text()
    before = stable_fields(route_status(setup.socket))
    # The broken file also switches the strategy, so that a partial apply would show.
    broken = good.replace("name: random", "name: round-robin").replace("request_timeout: 10s",
                                                                       "request_timeout: 10 parsecs")
    line, _ = line_of(broken, "10 parsecs")
    setup.router.config_path.write_text(broken)
    where = f"{setup.router.config_path}:{line}:"

    # 1. routerctl reload: refused with the file and line, exit non-zero.
    result = setup.ctl("reload")
    assert result.returncode != 0
    message = one_line(result.stderr)
    assert where in message and "request_timeout" in message, message
    # 2. The router keeps serving, unchanged.
    assert setup.requester.request(text="after the refused reload").type == "result"
    assert stable_fields(route_status(setup.socket)) == before
    # 3. SIGHUP: the router logs the refusal and keeps running, unchanged.
    mark = setup.router.mark()
    setup.router.process.send_signal(signal.SIGHUP)
    refusal = setup.router.wait_for_log(r"reload refused", since=mark)
    assert where in refusal.string, refusal.string
    assert setup.router.running
    assert setup.requester.request(text="after the refused SIGHUP").type == "result"
    assert stable_fields(route_status(setup.socket)) == before
    # 4. The same change in a valid file is applied by SIGHUP: what was refused was the file.
    setup.router.config_path.write_text(good.replace("name: random", "name: round-robin"))
    mark = setup.router.mark()
    setup.router.process.send_signal(signal.SIGHUP)
    setup.router.wait_for_log(r'msg="configuration reloaded"', since=mark)
    assert route_status(setup.socket)["strategy"] == "round-robin"


# --------------------------------------------------------------------------------------------
# 7. check


CHECK_ENV_SECRET = "CPR_CONTROL_TEST_SECRET"


def checked_config(tmp_path: Path) -> str:
    route = route_yaml("service", 5347).replace(f"secret: {yaml_string(COMPONENT_SECRET)}",
                                                f"secret: {{ env: {CHECK_ENV_SECRET} }}")
    return config_yaml(tmp_path / "control.sock", [route], metrics_port=9477)


BROKEN_FILES = {
    # case: (replace, with, fragment at the reported line and column, key, words of the reason)
    "unknown key": ("    request_timeout: 10s", "    request_timout: 10s", "request_timout",
                    "routes[0].request_timout", "unknown key"),
    "bad duration": ("request_timeout: 10s", "request_timeout: 10 parsecs", "10 parsecs",
                     "routes[0].request_timeout", "duration"),
    "unknown strategy": ("name: round-robin", "name: fastest", "name: fastest",
                         "routes[0].strategy", "fastest"),
    "missing secret environment variable": (None, None, CHECK_ENV_SECRET,
                                            "routes[0].secret.env", CHECK_ENV_SECRET),
}

CHECK_LINE = re.compile(r"^(?:routerctl: )?(?P<file>.+):(?P<line>\d+):(?P<column>\d+): (?P<key>\S+): (?P<reason>.+)$")


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_check_refuses_a_broken_file_with_file_line_column_key_and_reason(tmp_path, case):
    old, new, fragment, key, reason_words = BROKEN_FILES[case]
    text = checked_config(tmp_path)
    env = {**os.environ, CHECK_ENV_SECRET: "from the environment"}
    if old is None:
        del env[CHECK_ENV_SECRET]
    else:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    line, column = line_of(text, fragment)

    result = routerctl("check", str(path), env=env)

    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    match = CHECK_LINE.match(one_line(result.stderr))
    assert match, result.stderr
    # The position is that of the unknown key, or of the value at fault.
    assert (match["file"], int(match["line"]), int(match["column"]), match["key"]) == \
        (str(path), line, column, key), result.stderr
    assert reason_words in match["reason"], result.stderr


def test_check_accepts_a_good_file(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(checked_config(tmp_path))

    result = routerctl("check", str(path), env={**os.environ, CHECK_ENV_SECRET: "from the environment"})

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert COMPONENT in result.stdout


# --------------------------------------------------------------------------------------------
# 8. metrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode("utf-8")


def test_metrics_scrape_parses_as_prometheus_text_and_counts_the_requests_sent(routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target, metrics_port=free_port())
    setup.router.wait_for_log(r'msg="metrics listening"')
    sent = 25
    answered = Counter(setup.answered_by(sent))
    # Three more that no resource takes: the router answers them itself.
    for name in ("a", "b"):
        assert setup.ctl("maint", COMPONENT, name).returncode == 0
    refused = [setup.requester.request(text=f"refused {n}") for n in range(3)]
    assert [(r.type, r.condition) for r in refused] == [("error", "service-unavailable")] * 3, refused

    scraped = scrape(setup.metrics_port)
    types = {family.name: family.type for family in text_string_to_metric_families(scraped) if family.samples}
    values = samples(scraped)
    route = (("route", COMPONENT),)

    # 1. The route's families are typed as documented.
    expected_types = {
        "client_proxy_router_requests_forwarded": "counter", "client_proxy_router_replies": "counter",
        "client_proxy_router_router_errors": "counter", "client_proxy_router_timeouts": "counter",
        "client_proxy_router_requests_in_flight": "gauge", "client_proxy_router_connection_up": "gauge",
        "client_proxy_router_reconnects": "counter", "client_proxy_router_resources": "gauge",
        "client_proxy_router_resource_reply_seconds": "histogram",
    }
    assert {name: types.get(name) for name in expected_types} == expected_types, types
    # 2. The counters match the requests sent.
    assert values[("client_proxy_router_requests_forwarded_total", route)] == sent
    assert values[("client_proxy_router_replies_total", route)] == sent
    assert values[("client_proxy_router_router_errors_total",
                   (("condition", "service-unavailable"), ("route", COMPONENT)))] == 3
    assert values[("client_proxy_router_timeouts_total", route)] == 0
    assert values[("client_proxy_router_requests_in_flight", route)] == 0
    assert values[("client_proxy_router_connection_up", route)] == 1
    assert values[("client_proxy_router_resources", (("route", COMPONENT), ("state", "maint")))] == 2
    assert values[("client_proxy_router_resources", (("route", COMPONENT), ("state", "ready")))] == 0
    for name in ("a", "b"):
        labels = (("resource", name), ("route", COMPONENT))
        assert values[("client_proxy_router_resource_served_total", labels)] == answered[name]
        assert values[("client_proxy_router_resource_requests_in_flight", labels)] == 0
        assert values[("client_proxy_router_resource_reply_seconds_count", labels)] == answered[name]
        every_bucket = tuple(sorted(labels + (("le", "+Inf"),)))
        assert values[("client_proxy_router_resource_reply_seconds_bucket", every_bucket)] == answered[name]
    # 3. `routerctl metrics` prints the same families and the same values.
    printed = setup.ctl("metrics")
    assert printed.returncode == 0, printed.stderr
    assert samples(printed.stdout) == values


def test_metrics_of_each_family_are_grouped_under_its_type_line(routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target, metrics_port=free_port())
    setup.router.wait_for_log(r'msg="metrics listening"')
    setup.answered_by(4)

    families = list(text_string_to_metric_families(scrape(setup.metrics_port)))

    # The text format wants all lines of a family in one group after its TYPE line; a sample away
    # from its group parses as a second, untyped family of the same name.
    untyped = [family.name for family in families if family.type == "unknown"]
    assert untyped == [], untyped
    names = [family.name for family in families]
    assert len(names) == len(set(names)), names
    expected = {"client_proxy_router_resource_requests_in_flight": "gauge",
                "client_proxy_router_resource_served": "counter",
                "client_proxy_router_resource_timeouts": "counter"}
    assert {f.name: (f.type, len(f.samples)) for f in families if f.name in expected} == \
        {name: (kind, 2) for name, kind in expected.items()}


# --------------------------------------------------------------------------------------------
# 9. the control socket: owner only; plain one-line errors; JSON


def another_user_setup(routers, clients, prosody, target) -> Setup:
    setup = Setup(routers, clients, prosody, target, resources=("a",))
    # Let other users reach the socket's folder, so that only the socket itself can refuse them.
    setup.socket.parent.chmod(0o755)
    return setup


def test_control_socket_is_owner_only_and_another_user_cannot_use_it(routers, clients, prosody, target):
    setup = another_user_setup(routers, clients, prosody, target)

    # 1. The socket file is owner-only.
    mode = setup.socket.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    assert setup.socket.stat().st_uid == os.getuid()
    # 2. Another user cannot connect.
    denied = routerctl("drain", COMPONENT, "a", socket_path=setup.socket, user="nobody")
    assert denied.returncode != 0, denied.stdout
    assert re.search(r"permission denied", one_line(denied.stderr), re.I), denied.stderr
    # 3. With the file opened to all by mistake, the router's peer-credential check still refuses.
    setup.socket.chmod(0o666)
    refused = routerctl("drain", COMPONENT, "a", socket_path=setup.socket, user="nobody")
    setup.socket.chmod(0o600)
    assert refused.returncode == 1, (refused.returncode, refused.stdout, refused.stderr)
    one_line(refused.stderr)
    # 4. Nothing changed, and the router still serves and answers its owner.
    assert resource_table(setup.socket)["a"]["state"] == "ready"
    assert setup.requester.request(text="still here").type == "result"
    assert setup.router.running


def test_another_user_is_told_permission_denied_not_that_the_router_is_not_running(
        routers, clients, prosody, target):
    setup = another_user_setup(routers, clients, prosody, target)

    denied = routerctl("status", socket_path=setup.socket, user="nobody")

    message = one_line(denied.stderr)
    assert "not running" not in message, message
    assert denied.returncode == 1, (denied.returncode, message)


def test_another_user_reads_the_routers_refusal_when_the_socket_file_is_open_to_all(
        routers, clients, prosody, target):
    setup = another_user_setup(routers, clients, prosody, target)
    setup.socket.chmod(0o666)

    # The race between the router's close and routerctl's send goes either way: try ten times.
    attempts = [routerctl("status", socket_path=setup.socket, user="nobody") for _ in range(10)]

    seen = Counter((result.returncode, result.stderr.strip()) for result in attempts)
    assert set(seen) == {(1, "routerctl: permission denied: the router runs as another user")}, seen


def test_not_running_and_no_such_route_are_one_line_errors(routers, clients, prosody, target, tmp_path):
    setup = Setup(routers, clients, prosody, target, resources=("a",))

    # 1. No socket at all: exit 4, one line.
    missing = routerctl("status", socket_path=tmp_path / "nothing.sock")
    assert missing.returncode == 4, missing
    assert "not running" in one_line(missing.stderr)
    assert missing.stdout == ""
    # 2. A socket file nobody listens on (left by a router that died): exit 4 too.
    stale_path = setup.socket.parent / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(stale_path))
    stale.close()
    result = routerctl("status", socket_path=stale_path)
    assert result.returncode == 4, result
    assert "not running" in one_line(result.stderr)
    # 3. No such route: exit 1, one line naming it.
    for args in (("resources", "nosuch.localhost"), ("drain", "nosuch.localhost", "a")):
        result = setup.ctl(*args)
        assert result.returncode == 1, result
        assert "nosuch.localhost" in one_line(result.stderr), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    # 4. Usage errors: exit 2.
    assert setup.ctl("weight", COMPONENT, "a", "heavy").returncode == 2
    assert setup.ctl("resources").returncode == 2
    # 5. --config finds the socket in the configuration file.
    found = routerctl("status", "--config", str(setup.router.config_path))
    assert found.returncode == 0, found.stderr
    assert COMPONENT in found.stdout


def test_json_output_of_status_resources_and_pending_parses(routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target, resources=("a",), mode="delay", delay=2.0)
    slow = setup.requester.request_in_background(text="held", timeout=10)
    deadline = time.monotonic() + 5
    while not setup.services["a"].requests and time.monotonic() < deadline:
        time.sleep(0.05)

    status = ctl_json(setup.socket, "status")
    resources = ctl_json(setup.socket, "resources", COMPONENT)
    pending = ctl_json(setup.socket, "pending", COMPONENT, "--limit", "5")

    route = status["routes"][0]
    assert (route["route"], route["target"], route["connection"]) == \
        (COMPONENT, f"{setup.target}@{DOMAIN}", "authenticated"), route
    assert (route["pending"], route["forwarded"], route["resources_online"]) == (1, 1, 1), route
    assert [(r["resource"], r["online"], r["state"], r["pending"]) for r in resources["resources"]] == \
        [("a", True, "ready", 1)], resources
    [held] = pending["pending"]
    assert (held["sender"], held["resource"]) == (setup.requester.jid, "a"), held
    assert held["id"] == setup.services["a"].requests[0][1]
    assert held["age_ms"] >= 0
    assert slow.result(timeout=10).type == "result"
    # The human tables of the same commands have a header and a row.
    table = setup.ctl("resources", COMPONENT).stdout.splitlines()
    assert table[0].split()[:3] == ["RESOURCE", "ONLINE", "STATE"] and table[1].split()[0] == "a", table


# --------------------------------------------------------------------------------------------
# 10. stop


def test_routerctl_stop_answers_pending_requests_and_the_router_exits_zero(routers, clients, prosody, target):
    setup = Setup(routers, clients, prosody, target, resources=("a",), mode="never")
    held = [setup.requester.request_in_background(text=f"held {n}", timeout=10) for n in range(3)]
    deadline = time.monotonic() + 5
    while len(setup.services["a"].requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(setup.services["a"].requests) == 3

    result = setup.ctl("stop")

    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == "stopping"
    assert setup.router.process.wait(timeout=10) == 0, setup.router.tail()
    replies = [future.result(timeout=10) for future in held]
    assert [(r.type, r.from_jid) for r in replies] == [("error", COMPONENT)] * 3, replies
    after = setup.ctl("status")
    assert after.returncode == 4, after
    assert not setup.socket.exists(), "the stopped router left its control socket behind"
