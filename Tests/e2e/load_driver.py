"""Many requests from real slixmpp clients, each answer counted as it arrives on the wire.

slixmpp resolves a waiting future once per id, which would hide a second answer; so each
requester gets a raw handler that records every IQ result or error it receives, and the analysis
counts answers per request id. Request ids are unique per run and name the session that sent
them, so an answer that reaches a session which did not send its id shows up as misdelivered.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional
from xml.sax.saxutils import escape, quoteattr

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness import ECHO_NS, STANZAS_NS, ClientLoop, RequesterClient, ServiceClient


@dataclass
class Answer:
    type: str
    condition: str
    from_jid: str
    to_jid: str
    text: str
    session: str          # the full JID of the session that received it
    at: float


@dataclass
class SentRequest:
    id: str
    session: str          # the full JID that sent it
    epoch: int            # which generation of client sessions sent it (a Prosody restart starts one)
    kind: str
    sent_at: float
    answers: list[Answer] = field(default_factory=list)
    release: Optional[Callable[[], None]] = None

    def settle(self) -> None:
        """Frees the request's place in its sender's window, once."""
        release, self.release = self.release, None
        if release is not None:
            release()


class LoadRecorder:
    """Every request sent and every answer received, by id; lives on the clients' event loop."""

    def __init__(self):
        self.sent: dict[str, SentRequest] = {}
        self.unknown: list[Answer] = []      # answers whose id nobody sent

    def attach(self, clients: ClientLoop, session: RequesterClient) -> None:
        """Records every IQ result or error `session` receives, before slixmpp looks at it."""
        def on_iq(iq) -> None:
            if iq["type"] not in ("result", "error"):
                return
            xml = iq.xml
            query = xml.find(f"{{{ECHO_NS}}}query")
            condition = ""
            error = xml.find("{jabber:client}error")
            if error is not None:
                for child in error:
                    if child.tag.startswith(f"{{{STANZAS_NS}}}") and not child.tag.endswith("}text"):
                        condition = child.tag.split("}", 1)[1]
                        break
            answer = Answer(type=iq["type"], condition=condition, from_jid=xml.get("from", ""),
                            to_jid=xml.get("to", ""), text=(query.text or "") if query is not None else "",
                            session=session.jid, at=time.monotonic())
            request = self.sent.get(xml.get("id", ""))
            if request is None:
                self.unknown.append(answer)
                return
            request.answers.append(answer)
            request.settle()

        async def register():
            session.client.register_handler(Callback("count every answer", MatchXPath("{jabber:client}iq"), on_iq))
        clients.run(register(), timeout=5)

    # Analysis

    def problems(self, component: str, may_be_lost: Callable[[SentRequest], bool]) -> list[str]:
        """What breaks the promise: duplicates, misdelivery, wrong payloads, unexplained losses."""
        out = []
        for request in self.sent.values():
            if len(request.answers) > 1:
                out.append(f"{request.id}: {len(request.answers)} answers: {request.answers}")
            if not request.answers and not may_be_lost(request):
                out.append(f"{request.id}: no answer (sent by {request.session}, epoch {request.epoch}, "
                           f"{request.kind})")
            for answer in request.answers:
                if answer.session != request.session or answer.to_jid != request.session:
                    out.append(f"{request.id}: sent by {request.session}, answered to {answer.to_jid} "
                               f"on session {answer.session}")
                if answer.from_jid != component:
                    out.append(f"{request.id}: answer from {answer.from_jid}, expected {component}")
                if answer.type == "result" and answer.text != request.id:
                    out.append(f"{request.id}: result carries the payload of {answer.text!r}")
                if answer.type == "error" and not answer.condition:
                    out.append(f"{request.id}: error without a condition")
        for answer in self.unknown:
            out.append(f"answer with an id nobody sent reached {answer.session}: {answer}")
        return out

    def summary(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for request in self.sent.values():
            if not request.answers:
                counts["no answer"] += 1
            for answer in request.answers[:1]:
                counts["result" if answer.type == "result" else f"error {answer.condition}"] += 1
        return dict(sorted(counts.items()))

    def latencies(self, predicate: Callable[[Answer], bool]) -> list[float]:
        return [r.answers[0].at - r.sent_at for r in self.sent.values()
                if r.answers and predicate(r.answers[0])]


async def drive(recorder: LoadRecorder, session: RequesterClient, prefix: str, epoch: int, count: int,
                window: int, to: str, stop: threading.Event, give_up_after: float,
                kinds: tuple[str, ...] = ("get",), seed: int = 0, rate: Optional[float] = None) -> int:
    """Sends up to `count` echo requests from `session`, keeping at most `window` unanswered, and
    at most `rate` per second when given.

    A request frees its place when its first answer comes, or after `give_up_after` seconds. Stops
    early when `stop` is set or the session's connection is gone; returns how many were sent.
    """
    places = asyncio.Semaphore(window)
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    sent = 0
    started = loop.time()
    for n in range(count):
        if rate is not None and started + n / rate > loop.time():
            await asyncio.sleep(started + n / rate - loop.time())
        await places.acquire()
        client = session.client
        if stop.is_set() or client is None or client.transport is None or not client.is_connected():
            places.release()
            break
        iq_id = f"{prefix}-{n}"
        kind = rng.choice(kinds)
        request = SentRequest(id=iq_id, session=session.jid, epoch=epoch, kind=kind, sent_at=time.monotonic())
        request.release = places.release
        recorder.sent[iq_id] = request
        loop.call_later(give_up_after, request.settle)
        client.send_raw(f"<iq type='{kind}' to={quoteattr(to)} id={quoteattr(iq_id)}>"
                        f"<query xmlns='{ECHO_NS}'>{escape(iq_id)}</query></iq>")
        sent += 1
        if rate is None and n % 50 == 49:
            await asyncio.sleep(0)   # let replies in
    return sent


class TimedService(ServiceClient):
    """An echo resource that answers after `delay` seconds and records when each request came,
    so that a test can tell how many it held at once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []

    def _on_request(self, iq) -> None:
        if iq["type"] in ("get", "set"):
            self.arrivals.append(time.monotonic())
        super()._on_request(iq)

    def max_concurrent(self) -> int:
        """Most requests held at once, each held from its arrival for `delay` seconds."""
        ends: list[float] = []
        most = 0
        for arrival in sorted(self.arrivals):
            ends = [end for end in ends if end > arrival]
            ends.append(arrival + self.delay)
            most = max(most, len(ends))
        return most


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def rss_kib(pid: int) -> int:
    """The resident set size of process `pid` in KiB (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class RSSSampler:
    """Samples a process's RSS every `interval` seconds in a thread, until stopped."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_kib(self.pid))
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)
