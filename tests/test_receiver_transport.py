"""Outbound transport: TLS verification always on (ca_file adds a CA), proxy_url honoured."""

from __future__ import annotations

import asyncio
import ssl
import subprocess

import pytest
from helpers import receiver_app
from helpers.procs import free_port
from helpers.receiver import body, payload
from helpers.sink import Sink

make_receiver = receiver_app.make_receiver  # fixture
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def tls_sink(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with Sink(ssl_context=ctx) as sink:
        yield sink, cert


async def wait_outcome(client, sink, nid):
    for _ in range(100):
        if nid in sink.delivered_ids():
            return "delivered"
        rows = (await (await client.get("/api/v1/notifications?limit=5")).json())["data"]
        job = next(r for r in rows if r["id"] == nid)["deliveries"][0]
        if job["last_error"]:
            return job["last_error"]
        await asyncio.sleep(0.05)
    return "timeout"


async def test_tls_verified_with_ca_file_and_refused_without(make_receiver, tls_sink):
    sink, cert = tls_sink
    rt, client = await make_receiver(f"""
routes: {{trusted: [with_ca], untrusted: [without_ca]}}
targets:
  with_ca: {{type: testsink, url: "{sink.url}", ca_file: {cert}}}
  without_ca: {{type: testsink, url: "{sink.url}"}}
retry_backoff: {{initial: 10s, max: 10s}}
""")
    ok = (await (await client.post("/alerts/trusted", data=body(payload("A")), headers=JSON)).json())["id"]
    bad = (await (await client.post("/alerts/untrusted", data=body(payload("B")), headers=JSON)).json())["id"]
    assert await wait_outcome(client, sink, ok) == "delivered"
    outcome = await wait_outcome(client, sink, bad)
    assert "certificate" in outcome.lower() or "ssl" in outcome.lower(), outcome
    assert bad not in sink.delivered_ids()


async def test_proxy_url_is_used(make_receiver):
    with Sink() as proxy:
        target = f"http://127.0.0.1:{free_port()}/robot/send"  # nothing listens: only the proxy can answer
        rt, client = await make_receiver(f"""
routes: {{critical: [hook]}}
targets:
  hook: {{type: testsink, url: "{target}", proxy_url: "{proxy.url.rsplit('/', 1)[0]}"}}
""")
        nid = (await (await client.post("/alerts/critical", data=body(payload()), headers=JSON)).json())["id"]
        assert await proxy.async_wait_for(lambda s: nid in s.delivered_ids(), 10)
        assert proxy.delivered()[0].url == target
