"""Fixtures for the end-to-end tests: one private Prosody per test session, and per test a
fresh target account, the router, and the slixmpp clients, all torn down even on failure."""

from __future__ import annotations

import itertools
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import (  # noqa: E402
    COMPONENT, COMPONENT_SECRET, DOMAIN, ClientLoop, ProsodyServer, RequesterClient, RouterProcess,
    ServiceClient, router_binary, router_config_yaml,
)

# Accounts every test may use besides its own target account.
REQUESTER_ACCOUNT = "alice"
FORGER_ACCOUNT = "mallory"


@pytest.fixture(scope="session")
def prosody_server(tmp_path_factory):
    if not harness.prosody_available():
        pytest.fail("prosody and prosodyctl are not installed; run scripts/setup")
    server = ProsodyServer(tmp_path_factory.mktemp("prosody"))
    for account in (REQUESTER_ACCOUNT, FORGER_ACCOUNT):
        server.register(account)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prosody(prosody_server):
    """The session's Prosody, started again if an earlier test left it stopped."""
    if not prosody_server.running:
        prosody_server.start()
    return prosody_server


_target_numbers = itertools.count(1)


@pytest.fixture
def target(prosody) -> str:
    """A fresh target account per test, so that each test starts with no subscription."""
    account = f"service{next(_target_numbers)}"
    prosody.register(account)
    return account


class Clients:
    """Makes slixmpp sessions for one test and disconnects all of them at the end."""

    def __init__(self, port: int):
        self.port = port
        self.loop = ClientLoop()
        self.sessions = []

    def service(self, account: str, resource: str, **options) -> ServiceClient:
        session = ServiceClient(self.loop, self.port, resource, account=account, **options)
        self.sessions.append(session)
        session.connect()
        return session

    def requester(self, account: str = REQUESTER_ACCOUNT, resource: str = "phone") -> RequesterClient:
        session = RequesterClient(self.loop, self.port, account, resource)
        self.sessions.append(session)
        session.connect()
        return session

    def close(self) -> None:
        for session in self.sessions:
            try:
                session.disconnect(timeout=3)
            except Exception:  # a session the test already broke must not hide the test's result
                pass
        self.loop.close()


@pytest.fixture
def clients(prosody):
    made = Clients(prosody.c2s_port)
    yield made
    made.close()


class Routers:
    """Starts routers for one test; stops them at the end and checks each exited with 0."""

    def __init__(self, prosody: ProsodyServer, workdir: Path):
        self.prosody = prosody
        self.workdir = workdir
        self.started: list[RouterProcess] = []
        self.socket_folders: list[Path] = []

    def start(self, target: str, request_timeout: str = "10s", secret: str = COMPONENT_SECRET,
              wait_authenticated: bool = True) -> RouterProcess:
        name = f"router{len(self.started) + 1}"
        # Unix socket paths are limited to 108 bytes, so the socket lives in a short folder.
        socket_folder = Path(tempfile.mkdtemp(prefix="cpr-"))
        self.socket_folders.append(socket_folder)
        control_socket = socket_folder / "control.sock"
        config = router_config_yaml(COMPONENT, self.prosody.component_port, secret,
                                    f"{target}@{DOMAIN}", request_timeout, control_socket=control_socket)
        router = RouterProcess(self.workdir, config, name=name)
        self.started.append(router)
        router.start()
        if wait_authenticated:
            router.wait_for_log(r'msg="component authenticated".*route=' + COMPONENT.replace(".", r"\."))
        return router

    def control_socket(self) -> Path:
        """A control socket path in a short folder of its own (removed at the end of the test)."""
        socket_folder = Path(tempfile.mkdtemp(prefix="cpr-"))
        self.socket_folders.append(socket_folder)
        return socket_folder / "control.sock"

    def start_config(self, config_text: str, components: tuple[str, ...] = (COMPONENT,),
                     env: Optional[dict[str, str]] = None, wait_authenticated: bool = True) -> RouterProcess:
        """Starts a router on a configuration the test wrote, and waits until each of `components`
        has authenticated. Stopped and checked at the end like the routers `start` makes."""
        router = RouterProcess(self.workdir, config_text, name=f"router{len(self.started) + 1}", env=env)
        self.started.append(router)
        router.start()
        if wait_authenticated:
            for component in components:
                router.wait_for_log(r'msg="component authenticated".*route=' + re.escape(component) + r'(\s|$)')
        return router

    def stop_all(self) -> list[str]:
        """Stops the routers still running; returns a problem description per bad exit."""
        problems = []
        for router in self.started:
            if router.running:
                code = router.stop()
                if code != 0:
                    problems.append(f"{router.log_path.name} exited with {code} on SIGTERM; log tail:\n"
                                    f"{router.tail()}")
        for folder in self.socket_folders:
            shutil.rmtree(folder, ignore_errors=True)
        return problems


@pytest.fixture
def routers(prosody, tmp_path):
    if not router_binary().exists():
        pytest.fail(f"{router_binary()} does not exist; run `swift build` first (or set ROUTERCTL)")
    made = Routers(prosody, tmp_path)
    yield made
    problems = made.stop_all()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the router and Prosody log tails to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    routers_fixture = item.funcargs.get("routers")
    if routers_fixture is not None:
        for router in routers_fixture.started:
            report.sections.append((f"{router.log_path.name} (tail)", router.tail(60)))
    prosody_fixture = item.funcargs.get("prosody")
    if prosody_fixture is not None and prosody_fixture.log_path.exists():
        lines = prosody_fixture.log_path.read_text(errors="replace").splitlines()[-60:]
        report.sections.append(("prosody.log (tail)", "\n".join(lines)))


def pytest_report_header(config):
    return [f"routerctl: {router_binary()}", f"prosody: {shutil.which('prosody')}"]
