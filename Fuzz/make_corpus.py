#!/usr/bin/env python3
"""Writes the seed corpus of each fuzzing harness to Fuzz/corpus/NAME/.

Files named regression-* are inputs that once crashed a harness; they are kept as they are.

The seeds are committed; run this again only to change them. The hmac and sealed JATs are made
with the keys and route that Fuzz/jat/Harness.swift uses, so that the fuzzer starts from JATs that
verify and mutates around them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CORPUS = Path(__file__).resolve().parent / "corpus"

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='proxy.example.org' id='3BF96D32'>")

STREAMS = {
    "handshake": HEADER + "<handshake/>",
    "request": HEADER + "<iq type='get' id='r1' from='user@example.org/phone' to='proxy.example.org'>"
                        "<query xmlns='urn:example:echo'>hello</query></iq>",
    "reply": HEADER + "<iq type='result' id='r1' from='service@example.org/a' "
                      "to='proxy.example.org/dXNlckBleGFtcGxlLm9yZy9waG9uZQ'>"
                      "<query xmlns='urn:example:echo' resource='a'>hello</query></iq>",
    "presence": HEADER + "<presence from='service@example.org/a' to='proxy.example.org'>"
                         "<priority>5</priority><show>away</show></presence>"
                         "<presence type='unavailable' from='service@example.org/b' to='proxy.example.org'/>",
    "prefixes": HEADER + "<iq xmlns:x='urn:x' xmlns:y='urn:y' type='set' id='p' x:attr='1' y:attr='2' "
                         "from='a@b/c' to='proxy.example.org' xml:lang='fr'><x:q><y:r xmlns='urn:z'>"
                         "<inner/>t&amp;&lt;&gt;&quot;&apos;&#xE9;&#x1F600;</y:r></x:q></iq>",
    "unicode": HEADER + "<message to='proxy.example.org' from='ü@exämple.org/中文 ✓' type='chat'>"
                        "<body>héllo 𝄞 ∑</body></message>",
    "whitespace": HEADER + "  \n\t<iq type='get' id='w' to='proxy.example.org' from='a@b/c'/>  \r\n ",
    "stream-error": HEADER + "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                             "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bad</text></stream:error>"
                             "</stream:stream>",
    "cdata": HEADER + "<iq type='get' id='c' to='p' from='a@b/c'><q xmlns='u'><![CDATA[<x>&]]></q></iq>",
    "dtd": "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]>"
           + HEADER[len("<?xml version='1.0'?>"):] + "<iq>&b;</iq>",
    "comment": HEADER + "<!-- hi --><iq type='get' id='1' to='p' from='a@b'/>",
    "pi": HEADER + "<?pi data?>",
    "no-namespace": "<stream xmlns:stream='http://etherx.jabber.org/streams' id='1'><iq id='x'/>",
    "attribute-whitespace": HEADER + "<iq id='a&#9;b&#10;c&#13;d' type=' get\t' to='p' from='a@b/c'/>",
}

JIDS = ["user@example.org", "user@example.org/phone", "example.org", "proxy.example.org/abc",
        "User@Example.ORG/Phone", "ü@exämple.org/中文 ✓", "a@b@c/d/e@f", "a@[::1]/r", "a@127.0.0.1",
        "a@example.org./r", "x" * 1023 + "@example.org", "a@b/" + "r" * 1023, "ǅ@example.org",
        "ﬀ@ﬁ.example/ﬂ", "a\u00ad@b.org", "a@b.org/\u200b", "@b", "a@", "a@b/", "/r", "a b@c",
        "ＡＢ@ｅｘａｍｐｌｅ.org"]

ROUTE = "proxy.example.org"
KEY = b"fuzzing key, sixteen bytes or more"
OLD_KEY = b"an older key that still verifies"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def hmac_jat(sender: str, key: bytes) -> str:
    data = sender.encode()
    tag = hmac.new(key, ROUTE.encode() + b"\0" + data, hashlib.sha256).digest()[:12]
    return f"{b64(data)}.{b64(tag)}"


def sealed_jat(sender: str, key: bytes) -> str:
    data = sender.encode()
    encryption = hmac.new(key, b"jat-sealed-encryption\0" + ROUTE.encode(), hashlib.sha256).digest()
    iv_key = hmac.new(key, b"jat-sealed-iv\0" + ROUTE.encode(), hashlib.sha256).digest()
    iv = hmac.new(iv_key, data, hashlib.sha256).digest()[:12]
    return b64(iv + AESGCM(encryption).encrypt(iv, data, None))


SENDERS = ["user@example.org/phone", "ü@exämple.org/中文 ✓", "a@b/c", "example.org/r"]
JATS = ([b64(s.encode()) for s in SENDERS] + [hmac_jat(s, KEY) for s in SENDERS]
        + [hmac_jat(SENDERS[0], OLD_KEY)] + [sealed_jat(s, KEY) for s in SENDERS]
        + [sealed_jat(SENDERS[0], OLD_KEY)] + SENDERS + ["", "A", "AB", "ABC=", "a.b", "....", "_-_-"])

CONFIG_HEAD = """log_level: debug
control:
  socket: /tmp/cpr-fuzz/control.sock
metrics:
  listen: 127.0.0.1:9477
routes:
  - component: proxy.example.org
    server: { host: 127.0.0.1, port: 5347 }
    secret: { env: FUZZ_SECRET }
    target: service@example.org
"""

CONFIGS = {
    "minimal": "routes:\n  - component: p.example\n    server: {host: h}\n    secret: s\n    target: a@b\n",
    "everything": CONFIG_HEAD + """    strategy:
      name: least-pending
      scan_limit: 16
      min_priority: 0
      away: avoid
      weight_from_priority: true
    encoder:
      name: hmac
      keys: [ { env: FUZZ_KEY }, { env: FUZZ_KEY } ]
      tag_bytes: 16
    request_timeout: 1500ms
    keepalive: 1m
    max_stanza_size: 64KiB
    limits: { max_pending: 10, max_pending_per_resource: 2 }
    rate_limit: { requests_per_second: 20, burst: 40 }
    access:
      allow: [example.org, "*@partner.example.net", "admin@*.example.org/*"]
      deny: [spammer@example.org]
    ejection: { consecutive_failures: 5, cooldown: 30s, max_cooldown: 5m }
    ping: { interval: 30s, timeout: 10s }
    retry: { namespaces: ["urn:example:echo", "*"], try_timeout: 5s }
    reconnect: { initial: 500ms, max: 30s }
""",
    "sticky-sealed": CONFIG_HEAD + """    strategy: { name: sticky-by-sender, key: full }
    encoder: { name: sealed, key: { env: FUZZ_KEY } }
  - component: other.example.org
    server: { host: ::1, port: 1 }
    secret: inline
    target: other@example.org
    strategy: round-robin
    encoder: { name: table, max_entries: 10, idle_expiry: 1s }
""",
    "anchors": "x: &a {host: h}\nroutes:\n  - component: p\n    server: *a\n    secret: s\n    target: a@b\n",
    "errors": CONFIG_HEAD + "    request_timout: 1s\n    max_stanza_size: 1B\n",
}


def main() -> None:
    for name, items in [("stream_parser", {k: b"\x2a" + v.encode() for k, v in STREAMS.items()}),
                        ("jid", {f"jid-{i}": j.encode() for i, j in enumerate(JIDS)}),
                        ("jat", {f"jat-{i}": j.encode() for i, j in enumerate(JATS)}),
                        ("config", {k: v.encode() for k, v in CONFIGS.items()})]:
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        # Inputs that once crashed a harness (regression-*) stay; the generated seeds are rewritten.
        for old in folder.iterdir():
            if not old.name.startswith("regression-"):
                old.unlink()
        for key, data in items.items():
            (folder / key).write_bytes(data)
        print(f"{folder}: {len(items)} seeds")


if __name__ == "__main__":
    main()
