"""SMTP channel against a real aiosmtpd server on 127.0.0.1: content, threading, TLS, auth, errors."""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from helpers.golden import FIXED_NOW, OWN_FIXTURES, load_notification
from helpers.procs import free_port

from receiver.channels import load_registry
from receiver.channels.base import Delivered, PermanentFailure, RetryableFailure, SendContext
from receiver.channels.email import EmailChannel
from receiver.compose import compose
from receiver.config import TargetConfig
from receiver.templating import Templates

CTX = SendContext(session=None, timeout=10)


class Sink:
    """aiosmtpd handler: records messages; ``rcpt_reply``/``data_reply`` force an error answer."""

    def __init__(self):
        self.envelopes = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self):
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes]


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"alerts" and auth_data.password == b"pa55word"
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def server_tls(tls_files) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    return ctx


@pytest.fixture
def smtp_server(request):
    """Start aiosmtpd with the given Controller kwargs (indirect parametrization or defaults)."""
    started = []

    def start(**kwargs) -> tuple[Sink, int]:
        sink = Sink()
        port = free_port()
        ctl = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
        ctl.start()
        started.append(ctl)
        return sink, port

    yield start
    for ctl in started:
        ctl.stop()


def channel(port: int, **options) -> EmailChannel:
    return EmailChannel("mail", {"smarthost": f"127.0.0.1:{port}", "from": "Alerts <alerts@example.com>", "to": ["ops@example.com", "dba@example.com"], **options})


def request_for(ch: EmailChannel, notification, lang="en"):
    target = TargetConfig(name="mail", type="email", options={}, language=lang, timezone="Asia/Shanghai")
    return compose(ch, Templates(clock=lambda: FIXED_NOW), target, [notification])


def notif(name="tpl_mixed.json"):
    return load_notification(OWN_FIXTURES / name)


def test_registered_defaults_and_validation():
    assert load_registry()["email"] is EmailChannel
    assert EmailChannel.default_send_resolved is False  # AlertManager's email default
    assert "auth_password" in EmailChannel.secret_options
    with pytest.raises(ValueError, match="require_tls: false is only allowed for a loopback"):
        EmailChannel("m", {"smarthost": "smtp.example.com:25", "from": "a@example.com", "to": "b@example.com", "require_tls": False})
    with pytest.raises(ValueError, match="host:port"):
        EmailChannel("m", {"smarthost": "smtp.example.com", "from": "a@example.com", "to": "b@example.com"})
    with pytest.raises(ValueError, match="auth_password"):
        EmailChannel("m", {"smarthost": "smtp.example.com:587", "from": "a@example.com", "to": "b@example.com", "auth_username": "u"})
    remote = EmailChannel("m", {"smarthost": "smtp.example.com:587", "from": "a@example.com", "to": "b@example.com, c@example.com"})
    assert remote.require_tls and not remote.implicit_tls and remote.recipients == ["b@example.com", "c@example.com"]
    assert EmailChannel("m", {"smarthost": "smtp.example.com:465", "from": "a@example.com", "to": "b@example.com"}).implicit_tls
    assert not EmailChannel("m", {"smarthost": "localhost:25", "from": "a@example.com", "to": "b@example.com"}).require_tls
    d = EmailChannel("m", {"smarthost": "localhost:25", "from": "a@example.com", "to": "b@example.com", "auth_username": "u", "auth_password": "p"}).describe()
    assert d["auth_password"] == "<secret>"


async def test_delivers_multipart_alternative_with_headers(smtp_server):
    sink, port = smtp_server()
    ch = channel(port, headers={"X-Team": "market-data"}, hello="receiver.test")
    result = await ch.send(CTX, request_for(ch, notif(), "zh"))
    assert isinstance(result, Delivered), result
    (env,) = sink.envelopes
    assert env.mail_from == "alerts@example.com" and env.rcpt_tos == ["ops@example.com", "dba@example.com"]
    (msg,) = sink.messages()
    assert msg["Subject"] == "[告警:2] CollectorLagHigh"
    assert msg["From"] == "Alerts <alerts@example.com>" and msg["To"] == "ops@example.com, dba@example.com"
    assert msg["X-Team"] == "market-data" and msg["Date"] and msg["X-AgentMon-Status"] == "firing"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "🔴 [严重] CollectorLagHigh: collector-000 lags behind the exchange feed" in text
    assert "开始时间 2026-11-28 17:10:00 CST (已持续 20分)" in text
    assert "<strong>🔴 [严重] CollectorLagHigh</strong>" in html and "</html>" in html


async def test_one_alert_group_stays_one_thread(smtp_server):
    sink, port = smtp_server()
    ch = channel(port)
    firing = notif("tpl_mixed.json")
    resolved = replace(firing, id="n-second", status="resolved", alerts=[replace(a, status="resolved", ends_at=FIXED_NOW) for a in firing.alerts])
    other_group = notif("tpl_one_alert.json")
    requests = [request_for(ch, n) for n in (firing, resolved, other_group)]
    for req in requests:
        assert isinstance(await ch.send(CTX, req), Delivered)
    assert "Date" not in requests[0].payload  # send() stamps a copy; a retried request stays as built
    m1, m2, m3 = sink.messages()
    assert m1["Message-ID"] != m2["Message-ID"]
    assert m1["In-Reply-To"] == m2["In-Reply-To"] == m1["References"] == m2["References"]
    assert m1["Thread-Topic"] == m2["Thread-Topic"] == "alerts: alertname=CollectorLagHigh"
    assert m3["In-Reply-To"] != m1["In-Reply-To"]
    assert m2["Subject"] == "[RESOLVED] CollectorLagHigh"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_success_and_failure(smtp_server):
    sink, port = smtp_server(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    good = channel(port, auth_username="alerts", auth_password="pa55word")
    assert isinstance(await good.send(CTX, request_for(good, notif())), Delivered)
    assert len(sink.envelopes) == 1
    bad = channel(port, auth_username="alerts", auth_password="wrong-password")
    result = await bad.send(CTX, request_for(bad, notif()))
    assert isinstance(result, PermanentFailure) and "535" in result.reason
    assert "wrong-password" not in result.reason
    anonymous = channel(port)
    result = await anonymous.send(CTX, request_for(anonymous, notif()))
    assert isinstance(result, PermanentFailure) and "530" in result.reason  # auth required
    assert len(sink.envelopes) == 1


async def test_550_is_permanent_with_server_message(smtp_server):
    sink, port = smtp_server()
    sink.rcpt_reply = "550 5.1.1 mailbox unavailable"
    ch = channel(port)
    result = await ch.send(CTX, request_for(ch, notif()))
    assert isinstance(result, PermanentFailure)
    assert "550" in result.reason and "mailbox unavailable" in result.reason


async def test_451_is_retryable(smtp_server):
    sink, port = smtp_server()
    sink.data_reply = "451 4.3.0 try again later"
    ch = channel(port)
    result = await ch.send(CTX, request_for(ch, notif()))
    assert isinstance(result, RetryableFailure) and "451" in result.reason and "try again later" in result.reason


async def test_connection_refused_is_retryable():
    ch = channel(free_port())
    result = await ch.send(CTX, request_for(ch, notif()))
    assert isinstance(result, RetryableFailure)


async def test_starttls_with_private_ca_and_auth(smtp_server, tls_files):
    sink, port = smtp_server(
        tls_context=server_tls(tls_files), require_starttls=True, authenticator=authenticator, auth_required=True
    )
    ch = channel(port, require_tls=True, ca_file=str(tls_files[0]), auth_username="alerts", auth_password="pa55word")
    result = await ch.send(CTX, request_for(ch, notif()))
    assert isinstance(result, Delivered), result
    assert len(sink.envelopes) == 1
    # without the CA the certificate is not trusted: never sent, never silently downgraded
    untrusted = channel(port, require_tls=True)
    result = await untrusted.send(CTX, request_for(untrusted, notif()))
    assert isinstance(result, PermanentFailure) and "certificate" in result.reason.lower()
    assert len(sink.envelopes) == 1


async def test_implicit_tls(smtp_server, tls_files):
    sink, port = smtp_server(ssl_context=server_tls(tls_files))
    ch = channel(port, force_implicit_tls=True, ca_file=str(tls_files[0]))
    result = await ch.send(CTX, request_for(ch, notif()))
    assert isinstance(result, Delivered), result
    assert sink.messages()[0]["Subject"] == "[FIRING:2] CollectorLagHigh"


async def test_require_tls_against_server_without_starttls_is_permanent(smtp_server):
    sink, port = smtp_server()
    ch = channel(port, require_tls=True)
    result = await ch.send(CTX, request_for(ch, notif()))
    assert isinstance(result, PermanentFailure) and "STARTTLS" in result.reason.upper()
    assert sink.envelopes == []


def test_oversize_email_shrinks_and_never_exceeds_max_bytes():
    ch = channel(25, max_bytes=20_000)
    n = notif("tpl_200_alerts.json")
    msg_req = request_for(ch, n)
    assert len(msg_req.body_bytes()) <= 20_000
    text = msg_req.payload.get_body(("plain",)).get_content()
    assert "…and" in text and "more" in text
    # one alert with a huge multi-byte description: last-resort cut, still valid UTF-8 and within limit
    one = notif("tpl_cjk_emoji.json")
    big = replace(one, alerts=[replace(one.alerts[0], annotations={"description": "行情🔥" * 20_000})])
    req = request_for(ch, big, "zh")
    assert len(req.body_bytes()) <= 20_000
    body = req.payload.get_body(("plain",)).get_content()
    assert body.rstrip().endswith("…") and "行情🔥" in body
