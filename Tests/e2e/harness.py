"""Helpers for end-to-end tests: a private Prosody, the router process, and slixmpp clients.

Everything here is bounded in time and stops only the processes it started, by PID. The
tests (conftest.py) and the demo (scripts/demo.py) share these helpers so that the demo
shows exactly the setup that the tests check.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from xml.sax.saxutils import escape, quoteattr

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

REPO_ROOT = Path(__file__).resolve().parents[2]

# The namespace of the toy service the tests put behind the proxy: a request carries a
# text, the answer echoes it and names the resource that answered.
ECHO_NS = "urn:example:echo"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

DOMAIN = "localhost"
COMPONENT = "proxy.localhost"
COMPONENT_SECRET = "s3cret & <\"router\"> é"
SERVICE_ACCOUNT = "service"
PASSWORD = "password"


class HarnessError(Exception):
    """A helper could not bring its part of the test setup into the expected state."""


def free_port() -> int:
    """Asks the kernel for a loopback port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: Optional[subprocess.Popen] = None) -> None:
    """Waits until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise HarnessError(f"process {process.pid} exited with {process.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError(f"nothing accepted connections on 127.0.0.1:{port} within {timeout}s")


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """Sends SIGTERM, then SIGKILL if the process outlives `timeout`; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode


def jat_for(full_jid: str) -> str:
    """The base64url encoder's translation of a sender: its full JID, unpadded base64url."""
    return base64.urlsafe_b64encode(full_jid.encode("utf-8")).decode("ascii").rstrip("=")


def lua_string(text: str) -> str:
    """Quotes text as a Lua string literal for Prosody's configuration file."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def yaml_string(text: str) -> str:
    """Quotes text as a YAML double-quoted scalar."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --------------------------------------------------------------------------------------------
# Prosody


class ProsodyServer:
    """A private Prosody on loopback with its own config, data, ports and log.

    Prosody 0.12 refuses to run as root unless `run_as_root = true` is set (mod_posix shuts it
    down otherwise, and prosodyctl would switch to the `prosody` user and then fail to write
    our data folder). We run it in the foreground (`-F`) so that its PID is the one we started.
    """

    def __init__(self, workdir: Path, component_secret: str = COMPONENT_SECRET,
                 domain: str = DOMAIN, component: str = COMPONENT,
                 extra_components: Optional[dict[str, str]] = None):
        self.workdir = Path(workdir)
        self.component_secret = component_secret
        self.domain = domain
        self.component = component
        # More component addresses this Prosody declares, each with its own secret.
        self.extra_components = dict(extra_components or {})
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.log_path = self.workdir / "prosody.log"
        self.console_path = self.workdir / "prosody.console.log"
        self.process: Optional[subprocess.Popen] = None
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        # An empty certificate folder keeps Prosody from logging errors about a missing one.
        (self.workdir / "certs").mkdir(exist_ok=True)
        self._write_config()

    def _write_config(self) -> None:
        w = self.workdir
        config = f"""-- Generated by Tests/e2e/harness.py for one test run.
run_as_root = true
pidfile = {lua_string(str(w / "prosody.pid"))}
data_path = {lua_string(str(w / "data"))}
certificates = {lua_string(str(w / "certs"))}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = {lua_string(str(self.log_path))} }} }}

c2s_ports = {{ {self.c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}

c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"

modules_enabled = {{ "roster", "saslauth", "disco", "ping", "posix" }}
modules_disabled = {{ "s2s", "tls" }}

VirtualHost {lua_string(self.domain)}

Component {lua_string(self.component)}
    component_secret = {lua_string(self.component_secret)}
"""
        for name, secret in self.extra_components.items():
            config += f"""
Component {lua_string(name)}
    component_secret = {lua_string(secret)}
"""
        self.config_path.write_text(config, encoding="utf-8")

    def register(self, user: str, password: str = PASSWORD) -> None:
        """Creates an account with prosodyctl, which writes straight into our data folder."""
        result = subprocess.run(
            ["prosodyctl", "--config", str(self.config_path), "register", user, self.domain, password],
            capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise HarnessError(f"prosodyctl register {user} failed: {result.stdout}{result.stderr}")

    def start(self, timeout: float = 15.0) -> None:
        if self.process is not None and self.process.poll() is None:
            raise HarnessError("Prosody is already running")
        with open(self.console_path, "ab") as console:
            self.process = subprocess.Popen(
                ["prosody", "-F", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.c2s_port, timeout, self.process)
            wait_for_port(self.component_port, timeout, self.process)
        except HarnessError:
            self.stop()
            raise HarnessError(f"Prosody did not start; see {self.log_path} and {self.console_path}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)

    def restart(self) -> None:
        """Stops and starts again on the same ports and data (accounts and rosters survive)."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


# --------------------------------------------------------------------------------------------
# The router


def router_binary(default_configuration: str = "debug") -> Path:
    """The routerctl to test: $ROUTERCTL if set, else the package's build folder."""
    override = os.environ.get("ROUTERCTL")
    if override:
        return Path(override)
    return REPO_ROOT / ".build" / default_configuration / "routerctl"


def router_config_yaml(component: str, port: int, secret: str, target: str,
                       request_timeout: str = "10s", log_level: str = "debug",
                       control_socket: Optional[Path] = None) -> str:
    """One route, written the way config.example.yaml documents it.

    `control_socket` gives the router a control socket of its own, so that a router under
    test never collides with another one running on the same machine.
    """
    control = f"control:\n  socket: {yaml_string(str(control_socket))}\n" if control_socket else ""
    return f"""# Generated by Tests/e2e/harness.py.
log_level: {log_level}
{control}routes:
  - component: {component}
    server:
      host: 127.0.0.1
      port: {port}
    secret: {yaml_string(secret)}
    target: {target}
    strategy:
      name: random
    encoder:
      name: base64url
    request_timeout: {request_timeout}
    keepalive: 60s
    reconnect:
      initial: 200ms
      max: 2s
"""


class RouterProcess:
    """`routerctl run CONFIG` in the foreground, its stderr captured to a log file."""

    def __init__(self, workdir: Path, config_text: str, binary: Optional[Path] = None,
                 name: str = "router", env: Optional[dict[str, str]] = None,
                 log_level: Optional[str] = "debug"):
        self.workdir = Path(workdir)
        self.env = env
        self.log_level = log_level
        self.binary = Path(binary) if binary else router_binary()
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.config_path.write_text(config_text, encoding="utf-8")
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> None:
        if not self.binary.exists():
            raise HarnessError(f"{self.binary} does not exist; run `swift build` first")
        with open(self.log_path, "ab") as log:
            level = ["--log-level", self.log_level] if self.log_level else []
            self.process = subprocess.Popen(
                [str(self.binary), "run", str(self.config_path), *level],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **self.env} if self.env else None,
            )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """A position in the log; pass it as `since` to look only at lines written after it."""
        return len(self.log_text())

    def wait_for_log(self, pattern: str, timeout: float = 10.0, since: int = 0) -> re.Match:
        """Waits for a log line matching the regular expression `pattern` after `since`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()[since:]
            for line in text.splitlines():
                match = regex.search(line)
                if match:
                    return match
            if time.monotonic() >= deadline:
                raise HarnessError(f"no router log line matched {pattern!r} within {timeout}s; "
                                   f"log tail:\n{self.tail()}")
            if self.process is not None and self.process.poll() is not None:
                raise HarnessError(f"router exited with {self.process.returncode} while waiting for "
                                   f"{pattern!r}; log tail:\n{self.tail()}")
            time.sleep(0.05)

    def wait_for_resources(self, component: str, resources: set[str], timeout: float = 10.0,
                           since: int = 0) -> None:
        """Waits until the router has logged each of `resources` as available (after `since`)."""
        for resource in sorted(resources):
            self.wait_for_log(rf'msg="resource available".*route={re.escape(component)}\b.*'
                              rf'resource={re.escape(resource)}(\s|$)', timeout, since)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code (None if never started)."""
        if self.process is None:
            return None
        return stop_process(self.process, timeout)


# --------------------------------------------------------------------------------------------
# XMPP clients


class ClientLoop:
    """One asyncio event loop in a daemon thread, where all slixmpp clients of a test live.

    Tests are plain synchronous functions; they hand coroutines to this loop and wait for
    the result with a timeout, so a stuck client fails a test instead of hanging it.
    """

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="xmpp-clients", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine, timeout: float = 15.0):
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise HarnessError(f"client operation did not finish within {timeout}s")

    def close(self) -> None:
        """Cancels what is left (disconnected clients keep filter tasks) and stops the thread.

        The loop is stopped but not closed: slixmpp's clients schedule work on it when they
        are garbage-collected, which a closed loop answers with noisy tracebacks.
        """
        async def cancel_others():
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=2) if tasks else None

        try:
            self.run(cancel_others(), timeout=5)
        except HarnessError:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        _STOPPED_LOOPS.append(self.loop)


# Stopped loops stay referenced until the interpreter exits (see ClientLoop.close).
_STOPPED_LOOPS: list[asyncio.AbstractEventLoop] = []


def _new_client(jid: str, password: str) -> slixmpp.ClientXMPP:
    """A slixmpp client for our loopback Prosody: no TLS, PLAIN allowed without it."""
    client = slixmpp.ClientXMPP(
        jid, password,
        plugin_config={"feature_mechanisms": {"unencrypted_plain": True}},
    )
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.enable_plaintext = True
    client.use_ipv6 = False
    # A lost connection in a test is a failure to report, not something to paper over.
    client.auto_reconnect = False
    return client


class _Session:
    """A logged-in slixmpp client; the parts shared by the service and the requester."""

    def __init__(self, clients: ClientLoop, port: int, jid: str, password: str):
        self.clients = clients
        self.port = port
        self.requested_jid = jid
        self.password = password
        self.client: Optional[slixmpp.ClientXMPP] = None
        # Every IQ and message this session received, as text, in arrival order.
        self.received: list[str] = []

    @property
    def jid(self) -> str:
        """The full JID the server bound for this session."""
        assert self.client is not None
        return str(self.client.boundjid.full)

    def connect(self, timeout: float = 15.0) -> None:
        self.clients.run(self._connect(timeout), timeout + 1)

    async def _connect(self, timeout: float) -> None:
        self.client = _new_client(self.requested_jid, self.password)
        started = asyncio.Event()
        failure: list[str] = []

        async def on_session_start(_event):
            await self._on_session_start()
            started.set()

        def on_failed_auth(_event):
            failure.append("authentication failed")
            started.set()

        self.client.add_event_handler("session_start", on_session_start)
        self.client.add_event_handler("failed_auth", on_failed_auth)
        for kind in ("iq", "message"):
            self.client.register_handler(Callback(
                f"record every {kind}", MatchXPath(f"{{jabber:client}}{kind}"),
                lambda stanza: self.received.append(str(stanza))))
        self._register_handlers()
        self.client.connect("127.0.0.1", self.port)
        try:
            await asyncio.wait_for(started.wait(), timeout)
        except asyncio.TimeoutError:
            self.client.abort()
            raise HarnessError(f"{self.requested_jid} did not log in within {timeout}s")
        if failure:
            self.client.abort()
            raise HarnessError(f"{self.requested_jid}: {failure[0]}")

    async def _on_session_start(self) -> None:
        pass

    def _register_handlers(self) -> None:
        pass

    def wait_for_received(self, pattern: str, timeout: float = 10.0) -> str:
        """Waits for a received stanza whose text matches the regular expression `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for stanza in list(self.received):
                if regex.search(stanza):
                    return stanza
            if time.monotonic() >= deadline:
                raise HarnessError(f"{self.requested_jid} received nothing matching {pattern!r} "
                                   f"within {timeout}s; received: {self.received[-5:]}")
            time.sleep(0.05)

    def send_raw(self, xml: str) -> None:
        """Sends text as is on the client's stream (for stanzas slixmpp would not build)."""
        assert self.client is not None
        self.clients.loop.call_soon_threadsafe(self.client.send_raw, xml)

    def disconnect(self, timeout: float = 5.0) -> None:
        """Closes the stream cleanly: the server broadcasts unavailable presence."""
        if self.client is None:
            return
        self.clients.run(self._disconnect(timeout), timeout + 2)

    async def _disconnect(self, timeout: float) -> None:
        assert self.client is not None
        if self.client.transport is None:
            return
        try:
            await asyncio.wait_for(self.client.disconnect(wait=1.0), timeout)
        except asyncio.TimeoutError:
            self.client.abort()


class ServiceClient(_Session):
    """A resource of the target account implementing the echo service.

    `mode` decides how it answers: "answer" at once, "delay" after `delay` seconds, or
    "never". It accepts subscription requests (slixmpp's default auto_authorize).
    """

    def __init__(self, clients: ClientLoop, port: int, resource: str,
                 account: str = SERVICE_ACCOUNT, password: str = PASSWORD,
                 mode: str = "answer", delay: float = 0.0, domain: str = DOMAIN):
        super().__init__(clients, port, f"{account}@{domain}/{resource}", password)
        self.resource = resource
        self.mode = mode
        self.delay = delay
        # (from, id, text) of every echo request this resource was given.
        self.requests: list[tuple[str, str, str]] = []

    async def _on_session_start(self) -> None:
        assert self.client is not None
        await self.client.get_roster()
        self.client.send_presence()

    def _register_handlers(self) -> None:
        assert self.client is not None
        self.client.register_handler(Callback(
            "echo request", MatchXPath(f"{{jabber:client}}iq/{{{ECHO_NS}}}query"), self._on_request))

    def _on_request(self, iq) -> None:
        if iq["type"] not in ("get", "set"):
            return
        query = iq.xml.find(f"{{{ECHO_NS}}}query")
        text = (query.text or "") if query is not None else ""
        self.requests.append((str(iq["from"]), iq["id"], text))
        if self.mode == "never":
            return
        reply = iq.reply(clear=True)
        answer = ET.Element(f"{{{ECHO_NS}}}query", {"resource": self.resource})
        answer.text = text
        reply.append(answer)
        if self.mode == "delay":
            self.clients.loop.call_later(self.delay, reply.send)
        else:
            reply.send()


@dataclass
class Reply:
    """What came back for one request, as the requester saw it."""

    type: str                      # result, error, or timeout (nothing came back)
    from_jid: str = ""
    id: str = ""
    resource: str = ""             # which service resource answered (from the echo payload)
    text: str = ""                 # the echoed text
    condition: str = ""            # the stanza error condition, for type=error
    xml: str = field(default="", repr=False)


class RequesterClient(_Session):
    """A user who sends echo requests to the proxy and collects the replies by id.

    It matches replies by id only, not by `from`, so that a reply with a wrong `from`
    shows up in the test as a wrong `from` rather than as a timeout.
    """

    def __init__(self, clients: ClientLoop, port: int, account: str, resource: str,
                 password: str = PASSWORD, domain: str = DOMAIN):
        super().__init__(clients, port, f"{account}@{domain}/{resource}", password)
        self._waiting: dict[str, asyncio.Future] = {}
        self._counter = 0

    def _register_handlers(self) -> None:
        assert self.client is not None
        self.client.register_handler(Callback(
            "replies", MatchXPath("{jabber:client}iq"), self._on_iq))

    def _on_iq(self, iq) -> None:
        if iq["type"] not in ("result", "error"):
            return
        waiter = self._waiting.pop(iq["id"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(iq.xml)

    def request(self, to: str = COMPONENT, text: str = "hello", timeout: float = 10.0,
                iq_id: Optional[str] = None) -> Reply:
        """Sends one echo get to `to` and waits for its reply (Reply.type 'timeout' if none)."""
        return self.clients.run(self._request(to, text, timeout, iq_id), timeout + 5)

    def request_in_background(self, to: str = COMPONENT, text: str = "hello",
                              timeout: float = 10.0) -> "concurrent.futures.Future[Reply]":
        """Sends one echo get and returns at once; the future's result is the Reply."""
        return asyncio.run_coroutine_threadsafe(self._request(to, text, timeout, None), self.clients.loop)

    def request_many(self, count: int, to: str = COMPONENT, timeout: float = 10.0) -> list[Reply]:
        """Sends `count` requests at once and waits for all their replies."""
        async def all_requests():
            return await asyncio.gather(*[self._request(to, f"request {n}", timeout, None)
                                          for n in range(count)])
        return self.clients.run(all_requests(), timeout + 5)

    async def _request(self, to: str, text: str, timeout: float, iq_id: Optional[str]) -> Reply:
        assert self.client is not None
        self._counter += 1
        iq_id = iq_id or f"req-{self._counter}-{time.monotonic_ns()}"
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[iq_id] = waiter
        self.client.send_raw(f"<iq type='get' to={quoteattr(to)} id={quoteattr(iq_id)}>"
                             f"<query xmlns='{ECHO_NS}'>{escape(text)}</query></iq>")
        try:
            xml = await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            self._waiting.pop(iq_id, None)
            return Reply(type="timeout", id=iq_id)
        return _reply_from_xml(xml)


def _reply_from_xml(xml: ET.Element) -> Reply:
    reply = Reply(type=xml.get("type", ""), from_jid=xml.get("from", ""), id=xml.get("id", ""),
                  xml=ET.tostring(xml, encoding="unicode"))
    query = xml.find(f"{{{ECHO_NS}}}query")
    if query is not None:
        reply.resource = query.get("resource", "")
        reply.text = query.text or ""
    error = xml.find("{jabber:client}error")
    if error is not None:
        for child in error:
            if child.tag.startswith(f"{{{STANZAS_NS}}}") and not child.tag.endswith("}text"):
                reply.condition = child.tag.split("}", 1)[1]
                break
    return reply


def prosody_available() -> bool:
    return shutil.which("prosody") is not None and shutil.which("prosodyctl") is not None
