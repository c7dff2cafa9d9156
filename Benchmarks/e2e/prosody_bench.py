#!/usr/bin/env python3
"""End-to-end benchmark: IQ round trips through a real Prosody and the router, on loopback.

A private Prosody (started with Tests/e2e/harness.py, logging at warn) serves the component
`proxy.localhost`; the router (release build) serves it. Raw-socket clients, written here on
asyncio with a small stanza scanner rather than a full XMPP library so that they cost less
CPU than the server they measure, log in over c2s with SASL PLAIN: two resources of
`service@localhost` answer every request, and requesters send IQ gets to the component with a
fixed window in flight. Every reply is checked (type, id, `from`, `to`).

Figures, over the same measured window: round trips per second, latency percentiles (from
writing a request on the requester's socket to reading its reply there: two c2s hops, Prosody
four times, the router twice), and the CPU seconds of Prosody, of the router and of these
clients (utime + stime from /proc and getrusage). Prints one line per run and writes a
markdown section into docs/benchmarks.md.

Run from the repository root after `swift build -c release`, or through scripts/bench.
Everything is bounded in time; only the processes started here are stopped, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "Tests" / "e2e"))
import harness  # noqa: E402  (the shared Prosody and router helpers of the end-to-end tests)

DOMAIN = "localhost"
COMPONENT = "proxy.localhost"
SERVICE = "service"
PASSWORD = "password"
SECRET = "bench-secret"
PAYLOAD = b"<query xmlns='urn:example:bench'/>"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not bring its setup into the expected state."""


# --------------------------------------------------------------------------------------------
# Processes


class QuietProsody(harness.ProsodyServer):
    """The tests' Prosody, logging warnings only: debug logging would cost more than routing."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text(encoding="utf-8")
        quiet = text.replace('levels = { min = "debug" }', 'levels = { min = "warn" }')
        if quiet == text:
            print("prosody_bench: warning: could not lower Prosody's log level; figures will suffer",
                  file=sys.stderr)
        self.config_path.write_text(quiet, encoding="utf-8")


def cpu_seconds(pid: int) -> float:
    """utime + stime of all threads of `pid`, from /proc/PID/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent neither idle nor waiting for I/O (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# A minimal XMPP client: enough c2s for SASL PLAIN, bind and raw stanzas


START_TAG = re.compile(rb"<([A-Za-z?][\w:.?-]*)((?:\s+[\w:.-]+\s*=\s*(?:'[^']*'|\"[^\"]*\"))*)\s*([/?]?)>")
ATTRIBUTE = re.compile(rb"([\w:.-]+)\s*=\s*(?:'([^']*)'|\"([^\"]*)\")")


@dataclass
class Stanza:
    name: bytes
    attrs: dict
    inner: bytes


def attributes(text: bytes) -> dict:
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in ATTRIBUTE.finditer(text)}


def scan(buffer: bytearray, stanzas: list) -> int:
    """Appends the complete top-level elements at the start of `buffer` to `stanzas`; returns
    how many bytes they used. Limitation: not an XML parser. It expects what Prosody writes
    (quoted attributes, no element nested in one of its own name) and skips the stream header.
    """
    position = 0
    size = len(buffer)
    while True:
        while position < size and buffer[position] in b" \t\r\n":
            position += 1
        if position >= size:
            return position
        match = START_TAG.match(buffer, position)
        if match is None:
            if buffer.startswith(b"</stream:stream>", position):
                raise BenchError("the server closed the stream")
            if b">" in buffer[position:position + 4096] or size - position > 1 << 20:
                raise BenchError(f"unexpected input: {bytes(buffer[position:position + 200])!r}")
            return position
        name = match.group(1)
        end = match.end()
        if match.group(3) or name == b"stream:stream":
            inner = b""
        else:
            close = buffer.find(b"</" + name + b">", end)
            if close < 0:
                return position
            inner = bytes(buffer[end:close])
            end = close + len(name) + 3
        if not name.startswith(b"?"):
            stanzas.append(Stanza(name, attributes(match.group(2)), inner))
        position = end


class Client:
    """One c2s session: log in, then exchange raw stanzas in batches."""

    def __init__(self, port: int, user: str, resource_name: str):
        self.port = port
        self.user = user
        self.resource = resource_name
        self.jid = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buffer = bytearray()
        self.pending: list = []

    async def next(self, timeout: float = 10.0) -> Stanza:
        deadline = time.monotonic() + timeout
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.user}/{self.resource}: no stanza within {timeout}s")
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not data:
                raise BenchError(f"{self.user}/{self.resource}: connection closed")
            self.buffer += data
            used = scan(self.buffer, self.pending)
            del self.buffer[:used]
        return self.pending.pop(0)

    async def expect(self, name: bytes, timeout: float = 10.0) -> Stanza:
        stanza = await self.next(timeout)
        if stanza.name != name:
            raise BenchError(f"{self.user}: expected <{name.decode()}>, got <{stanza.name.decode()}> "
                             f"{stanza.attrs} {stanza.inner[:200]!r}")
        return stanza

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def open_stream(self) -> None:
        self.send(b"<?xml version='1.0'?><stream:stream to='" + DOMAIN.encode() + b"' xmlns='jabber:client' "
                  b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")

    async def login(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.open_stream()
        await self.expect(b"stream:stream")
        features = await self.expect(b"stream:features")
        if b"PLAIN" not in features.inner:
            raise BenchError(f"Prosody offers no SASL PLAIN: {features.inner!r}")
        token = base64.b64encode(b"\0" + self.user.encode() + b"\0" + PASSWORD.encode())
        self.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + token + b"</auth>")
        await self.expect(b"success")
        self.open_stream()
        await self.expect(b"stream:stream")
        features = await self.expect(b"stream:features")
        self.send(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"
                  + self.resource.encode() + b"</resource></bind></iq>")
        bound = await self.expect(b"iq")
        match = re.search(rb"<jid>([^<]+)</jid>", bound.inner)
        if bound.attrs.get(b"type") != b"result" or not match:
            raise BenchError(f"{self.user}: bind failed: {bound.inner!r}")
        self.jid = match.group(1).decode()
        if b"urn:ietf:params:xml:ns:xmpp-session" in features.inner and b"<optional" not in features.inner:
            self.send(b"<iq type='set' id='session'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
            await self.expect(b"iq")

    async def read_batch(self) -> list:
        """Waits for data and returns every complete stanza it holds (possibly none)."""
        data = await self.reader.read(262144)
        if not data:
            raise BenchError(f"{self.user}/{self.resource}: connection closed")
        self.buffer += data
        stanzas = self.pending
        self.pending = []
        used = scan(self.buffer, stanzas)
        del self.buffer[:used]
        return stanzas

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------------------------
# Service resources and requesters


@dataclass
class Counters:
    answered: int = 0
    completed: int = 0
    in_window: int = 0
    latencies: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def error(self, message: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(message)
        else:
            self.errors.append("")


async def serve(client: Client, counters: Counters, stop: asyncio.Event) -> None:
    """A resource of the target: approves the router's subscription, answers every request."""
    component = COMPONENT.encode()
    jat_prefix = component + b"/"
    while not stop.is_set():
        out = []
        for stanza in await client.read_batch():
            attrs = stanza.attrs
            if stanza.name == b"iq" and attrs.get(b"type") in (b"get", b"set"):
                sender = attrs.get(b"from")
                if sender is None:
                    # A roster push from our own server (the router's subscription): acknowledge it.
                    out.append(b"<iq type='result' id='" + attrs.get(b"id", b"") + b"'/>")
                    continue
                if not sender.startswith(jat_prefix) or stanza.inner != PAYLOAD:
                    counters.error(f"forwarded request from {sender!r} with {stanza.inner!r}")
                out.append(b"<iq type='result' id='" + attrs.get(b"id", b"") + b"' to='" + sender + b"'/>")
                counters.answered += 1
            elif stanza.name == b"presence" and attrs.get(b"type") == b"subscribe":
                out.append(b"<presence type='subscribed' to='" + attrs.get(b"from", b"") + b"'/>")
        if out:
            client.send(b"".join(out))


class Requester:
    """Sends IQ gets to the component, `window` in flight, and checks each reply."""

    def __init__(self, client: Client, window: int, counters: Counters):
        self.client = client
        self.window = window
        self.counters = counters
        self.sent: dict = {}
        self.next_id = 0
        self.jid = client.jid.encode()

    def request(self) -> bytes:
        self.next_id += 1
        ident = str(self.next_id).encode()
        self.sent[ident] = time.monotonic()
        return (b"<iq type='get' id='" + ident + b"' to='" + COMPONENT.encode() + b"'>" + PAYLOAD + b"</iq>")

    async def run(self, window_start: float, window_end: float, drain: float) -> None:
        self.client.send(b"".join(self.request() for _ in range(self.window)))
        component = COMPONENT.encode()
        while self.sent:
            now = time.monotonic()
            if now > window_end + drain:
                self.counters.error(f"{len(self.sent)} requests of {self.client.user} got no reply")
                return
            try:
                stanzas = await asyncio.wait_for(self.client.read_batch(), max(0.1, window_end + drain - now))
            except asyncio.TimeoutError:
                continue
            received = time.monotonic()
            out = []
            for stanza in stanzas:
                attrs = stanza.attrs
                if stanza.name != b"iq":
                    continue
                started = self.sent.pop(attrs.get(b"id"), None)
                if started is None:
                    self.counters.error(f"reply with an unknown id: {attrs}")
                    continue
                if attrs.get(b"type") != b"result" or attrs.get(b"from") != component \
                        or attrs.get(b"to") != self.jid:
                    self.counters.error(f"wrong reply: {attrs} {stanza.inner[:200]!r}")
                self.counters.completed += 1
                if window_start <= received < window_end:
                    self.counters.in_window += 1
                    self.counters.latencies.append(received - started)
                if received < window_end:
                    out.append(self.request())
            if out:
                self.client.send(b"".join(out))


async def first_answer(client: Client, timeout: float) -> None:
    """Retries one request until the router, knowing the service's resources, answers it."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        client.send(b"<iq type='get' id='ping" + str(attempt).encode() + b"' to='" + COMPONENT.encode() + b"'>"
                    + PAYLOAD + b"</iq>")
        reply = await client.expect(b"iq", timeout=10)
        if reply.attrs.get(b"type") == b"result":
            return
        await asyncio.sleep(0.2)
    raise BenchError(f"the router did not answer within {timeout}s")


# --------------------------------------------------------------------------------------------
# One run


@dataclass
class RunResult:
    name: str
    seconds: float
    round_trips: int
    prosody_cpu: float
    router_cpu: float
    client_cpu: float
    # Everything else the machine ran in the window: other people's work competing for the cores.
    other_cpu: float
    router_rss: int
    latencies: list
    errors: list

    @property
    def rate(self) -> float:
        return self.round_trips / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * (len(ordered) - 1)))] * 1e6

    @property
    def ratio(self) -> float:
        return self.prosody_cpu / self.router_cpu if self.router_cpu > 0 else float("inf")


async def run_load(name: str, c2s_port: int, requesters: int, window: int, warmup: float, duration: float,
                   prosody_pid: int, router_pid: int, user_offset: int) -> RunResult:
    counters = Counters()
    stop = asyncio.Event()
    # Fresh resource names per run: the previous run's sessions may still be closing.
    services = [Client(c2s_port, SERVICE, f"r{user_offset + index + 1}") for index in range(2)]
    users = [Client(c2s_port, f"user{user_offset + index + 1}", "bench") for index in range(requesters)]
    for client in services + users:
        await client.login()
    for service in services:
        # Prosody hands subscription requests only to sessions that asked for the roster.
        service.send(b"<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq><presence/>")
    serving = [asyncio.create_task(serve(service, counters, stop)) for service in services]
    try:
        await first_answer(users[0], timeout=30)
        start = time.monotonic()
        window_start = start + warmup
        window_end = window_start + duration
        tasks = [asyncio.create_task(Requester(user, window, counters).run(window_start, window_end, drain=30))
                 for user in users]
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        before = (cpu_seconds(prosody_pid), cpu_seconds(router_pid), own_cpu_seconds(), time.monotonic(),
                  machine_busy_seconds())
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        after = (cpu_seconds(prosody_pid), cpu_seconds(router_pid), own_cpu_seconds(), time.monotonic(),
                 machine_busy_seconds())
        rss = resident_bytes(router_pid)
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        for task in serving:
            task.cancel()
        for client in services + users:
            client.close()
    return RunResult(
        name=name, seconds=after[3] - before[3], round_trips=counters.in_window,
        prosody_cpu=after[0] - before[0], router_cpu=after[1] - before[1], client_cpu=after[2] - before[2],
        other_cpu=max(0.0, (after[4] - before[4]) - sum(after[i] - before[i] for i in range(3))),
        router_rss=rss, latencies=counters.latencies, errors=[e for e in counters.errors if e],
    )


# --------------------------------------------------------------------------------------------
# Report


def line(result: RunResult) -> str:
    return (f"scenario=\"{result.name}\" iq_per_s={result.rate:.0f} p50_us={result.percentile(0.5):.0f} "
            f"p99_us={result.percentile(0.99):.0f} p99.9_us={result.percentile(0.999):.0f} "
            f"prosody_cores={result.prosody_cpu / result.seconds:.2f} "
            f"router_cores={result.router_cpu / result.seconds:.3f} "
            f"prosody_to_router_cpu={result.ratio:.1f} clients_cores={result.client_cpu / result.seconds:.2f} "
            f"other_cores={result.other_cpu / result.seconds:.2f} "
            f"router_rss_mb={result.router_rss / 1048576:.1f} errors={len(result.errors)}")


def markdown(results: list, context: str) -> str:
    rows = [context, "",
            "| Run | IQs/s | p50 µs | p99 µs | p99.9 µs | Prosody cores | Router cores | Prosody CPU ÷ router CPU "
            "| Client cores | Other cores | Router RSS MB | Checks |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        checks = "ok" if not r.errors else f"{len(r.errors)} errors: {r.errors[0][:150]}".replace("|", "\\|")
        rows.append(f"| {r.name} | {r.rate:,.0f} | {r.percentile(0.5):.0f} | {r.percentile(0.99):.0f} | "
                    f"{r.percentile(0.999):.0f} | {r.prosody_cpu / r.seconds:.2f} | {r.router_cpu / r.seconds:.3f} | "
                    f"{r.ratio:.1f} | {r.client_cpu / r.seconds:.2f} | {r.other_cpu / r.seconds:.2f} | "
                    f"{r.router_rss / 1048576:.1f} | {checks} |")
    ceiling = max(results, key=lambda r: r.rate)
    met = "yes" if ceiling.ratio >= 30 and not ceiling.errors else "**no**"
    prosody_cores = ceiling.prosody_cpu / ceiling.seconds
    saturated = "" if prosody_cores >= 0.9 else \
        f"; Prosody used {prosody_cores:.2f} of a core, so this is not its ceiling"
    rows += ["", "| Target | Reached | Met |", "|---|---|---|",
             f"| router CPU ≤ 1/30 of Prosody's at Prosody's ceiling (the fastest run) | 1/{ceiling.ratio:.0f} "
             f"({ceiling.router_cpu / ceiling.seconds * 100:.1f}% of a core at {ceiling.rate:,.0f} IQs/s{saturated}) "
             f"| {met} |"]
    return "\n".join(rows)


def replace_section(path: Path, name: str, body: str) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = f"{begin}\n{body}\n{end}"
    start = text.find(begin)
    stop = text.find(end, start + 1) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        text = text[:start] + section + text[stop + len(end):]
    else:
        text += ("\n" if text.endswith("\n") else "\n\n") + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", default=str(REPO_ROOT / ".build" / "release" / "routerctl"))
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0,
                        help="measured seconds; /proc counts CPU in 10 ms ticks, so keep it long")
    parser.add_argument("--requesters", type=int, default=4)
    parser.add_argument("--windows", default="1,64", help="requests in flight per requester, one run each")
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    if not harness.prosody_available():
        print("prosody_bench: Prosody is not installed (apt-get install prosody); skipped")
        return 0
    if not Path(args.router).exists():
        print(f"prosody_bench: no router at {args.router}; run `swift build -c release` first", file=sys.stderr)
        return 2
    windows = [int(w) for w in args.windows.split(",")]
    users_needed = args.requesters * len(windows)
    work = Path(tempfile.mkdtemp(prefix="prosody-bench-"))
    prosody = QuietProsody(work / "prosody", component_secret=SECRET)
    router = None
    results = []
    failed = False
    try:
        prosody.register(SERVICE)
        for index in range(users_needed):
            prosody.register(f"user{index + 1}")
        prosody.start()
        config = harness.router_config_yaml(COMPONENT, prosody.component_port, SECRET, f"{SERVICE}@{DOMAIN}",
                                            request_timeout="30s", log_level="warning",
                                            control_socket=work / "control.sock")
        router = harness.RouterProcess(work, config, binary=Path(args.router), log_level=None)
        router.start()
        cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                         "unknown CPU")
        load = open("/proc/loadavg").read().split()[:3]
        context = (f"Through Prosody (`Benchmarks/e2e/prosody_bench.py`), {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: "
                   f"{os.cpu_count()} × {cpu_model}, load average before the run {' '.join(load)}. Prosody 0.12 on "
                   f"loopback (log level warn), the release router, 2 service resources and {args.requesters} "
                   f"requesters as raw asyncio c2s clients; {args.warmup:.0f} s warm-up, {args.duration:.0f} s measured.")
        print(context)
        for run, window in enumerate(windows):
            name = f"{args.requesters} requesters × {window} in flight"
            result = asyncio.run(run_load(name, prosody.c2s_port, args.requesters, window, args.warmup,
                                          args.duration, prosody.process.pid, router.process.pid,
                                          user_offset=run * args.requesters))
            print(line(result))
            for error in result.errors:
                print(f"  error: {error}")
            failed = failed or bool(result.errors)
            results.append(result)
        if results:
            table = markdown(results, context)
            print()
            print(table.split("\n", 2)[2])
            if not args.no_docs:
                replace_section(Path(args.docs), "prosody-bench", table)
                print(f"\nwrote {args.docs}")
    except (BenchError, harness.HarnessError) as error:
        print(f"prosody_bench: {error}", file=sys.stderr)
        if router is not None:
            print(router.tail(), file=sys.stderr)
        failed = True
    finally:
        if router is not None:
            router.stop()
        prosody.stop()
    if failed:
        print(f"prosody_bench: kept {work} (Prosody and router logs)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
