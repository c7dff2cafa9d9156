#!/usr/bin/env python3
"""Shows the router at work: a private Prosody, the router running config.example.yaml, a
service with two resources, and a requester whose requests are spread over them.

Run through scripts/demo, which installs what is missing and builds the release binary first.
Everything runs on loopback in a temporary folder and is stopped at the end.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "Tests" / "e2e"))

from harness import (  # noqa: E402
    ClientLoop, HarnessError, ProsodyServer, RequesterClient, RouterProcess, ServiceClient,
)

RESOURCES = ("a", "b")
DEMO_SECRET = "demo secret"


class ExampleConfig:
    """The few facts the demo needs from config.example.yaml, read from its first route.

    The demo runs the example file itself, so that a newcomer sees the documented defaults
    work; only the server port (a free one) and the control socket (a private one) change.
    """

    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self.component = self._first(r"^\s*-?\s*component:\s*(\S+)")
        self.target = self._first(r"^\s*target:\s*(\S+)")
        self.secret_env = None
        self.inline_secret = None
        env = re.search(r"^\s*secret:\s*\{\s*env:\s*(\w+)\s*\}", self.text, re.MULTILINE)
        inline = re.search(r"^\s*secret:\s*\"([^\"]*)\"", self.text, re.MULTILINE)
        if env:
            self.secret_env = env.group(1)
        elif inline:
            self.inline_secret = inline.group(1)
        else:
            raise SystemExit(f"{path}: the demo understands `secret: {{ env: NAME }}` or an inline secret")
        self.account, self.domain = self.target.split("@", 1)

    def _first(self, pattern: str) -> str:
        match = re.search(pattern, self.text, re.MULTILINE)
        if not match:
            raise SystemExit(f"{self.path}: no line matches {pattern!r}; the demo cannot use this file")
        return match.group(1).strip("\"'")

    @property
    def secret(self) -> str:
        return self.inline_secret if self.inline_secret is not None else DEMO_SECRET

    def for_demo(self, component_port: int, control_socket: Path) -> str:
        """The example's text with the server port and the control socket replaced."""
        text, count = re.subn(r"^(\s*port:\s*)\d+", rf"\g<1>{component_port}", self.text, count=1,
                              flags=re.MULTILINE)
        if count != 1:
            raise SystemExit(f"{self.path}: no `port:` line to point at the demo's Prosody")
        text = _without_top_level_block(text, "control")
        return f'control:\n  socket: "{control_socket}"\n\n' + text


def _without_top_level_block(text: str, key: str) -> str:
    """Removes a top-level `key:` mapping (its line and the indented lines under it)."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if re.match(rf"^{key}:", line):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        kept.append(line)
    return "".join(kept)


def shown_path(path: Path) -> str:
    """A path relative to the repository when it is inside it, as a newcomer would type it."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routerctl", type=Path, default=REPO_ROOT / ".build" / "release" / "routerctl")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config.example.yaml")
    parser.add_argument("--requests", type=int, default=10)
    options = parser.parse_args()

    example = ExampleConfig(options.config)
    workdir = Path(tempfile.mkdtemp(prefix="client-proxy-router-demo-"))
    prosody = ProsodyServer(workdir, component_secret=example.secret, domain=example.domain,
                            component=example.component)
    clients = ClientLoop()
    router = None
    sessions = []
    try:
        # 1. A private Prosody with the component and two accounts.
        for account in (example.account, "alice"):
            prosody.register(account)
        prosody.start()
        print("1. Prosody is running on loopback, just for this demo:")
        print(f"     clients connect to 127.0.0.1:{prosody.c2s_port}, components to "
              f"127.0.0.1:{prosody.component_port}")
        print(f"     accounts {example.target} (the service) and alice@{example.domain} (a user)")
        print(f"     component {example.component}, configured in {prosody.config_path}")

        # 2. The router, running the example configuration.
        config_text = example.for_demo(prosody.component_port, workdir / "control.sock")
        env = {example.secret_env: DEMO_SECRET} if example.secret_env else None
        router = RouterProcess(workdir, config_text, binary=options.routerctl, env=env, log_level=None)
        router.start()
        router.wait_for_log(r'msg="component authenticated"', timeout=15)
        print(f"2. The router is connected: {shown_path(options.routerctl)} run {router.config_path}")
        print(f"     that file is {options.config.name} with the server port set to {prosody.component_port}"
              f" and a private control socket")

        # 3. The service: one account, two online resources.
        for resource in RESOURCES:
            sessions.append(ServiceClient(clients, prosody.c2s_port, resource, account=example.account,
                                          domain=example.domain))
            sessions[-1].connect()
        router.wait_for_resources(example.component, set(RESOURCES), timeout=15)
        print(f"3. {example.target} is online as resources {' and '.join(RESOURCES)}; "
              f"the router has learned both from their presence")

        # 4. A user sends requests to the component's address.
        requester = RequesterClient(clients, prosody.c2s_port, "alice", "laptop", domain=example.domain)
        sessions.append(requester)
        requester.connect()
        print(f"4. {requester.jid} sends {options.requests} requests to {example.component}:")
        answered_by = Counter()
        for number in range(1, options.requests + 1):
            reply = requester.request(to=example.component, text=f"request {number}")
            if reply.type == "result":
                answered_by[reply.resource] += 1
                print(f"     request {number:2}  ->  answered by {example.target}/{reply.resource}"
                      f"  (reply from {reply.from_jid})")
            else:
                answered_by["no answer"] += 1
                print(f"     request {number:2}  ->  {reply.type} {reply.condition}")

        summary = ", ".join(f"{name}: {answered_by[name]}" for name in RESOURCES)
        if answered_by["no answer"]:
            summary += f", no answer: {answered_by['no answer']}"
        print(f"\nSummary: {summary}")
        print("config.example.yaml picks the round-robin strategy: each resource in turn. Change its "
              "`strategy:` to random, least-pending or sticky-by-sender to see the others.")
        succeeded = answered_by["no answer"] == 0
    except HarnessError as error:
        print(f"\nThe demo failed: {error}", file=sys.stderr)
        succeeded = False
    finally:
        mark = router.mark() if router is not None else 0
        for session in sessions:
            try:
                session.disconnect(timeout=3)
            except Exception:  # stopping must go on even if one client is already gone
                pass
        clients.close()
        if router is not None and router.running and sessions:
            # Let the router log both resources leaving before it is stopped.
            try:
                router.wait_for_log(r'msg="resource unavailable".*resources=0', timeout=3, since=mark)
            except HarnessError:
                pass
        code = router.stop() if router is not None else None
        prosody.stop()

    print("\n5. Stopped: " + (f"the router exited with {code} on SIGTERM, " if code is not None else "")
          + "clients disconnected, Prosody stopped.")
    if router is not None:
        print(f"\nWhat the router logged ({router.log_path}):")
        for line in router.log_text().splitlines():
            print(f"     {line}")
    return 0 if succeeded and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
