"""Alert e-mail over STARTTLS with login (issue 15, Low 9), against a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from aromatrack.services.notifier import DeliveryError, Message, SmtpConfig, send_email
from aromatrack.services.store import Contact
from tests.unit.test_api_access import alert_for

CONTACT = Contact("dr-1", "dr@clinic.example", None, None)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
        if ok:
            self.logins.append(auth_data.login)
        return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server(box: Mailbox, certificate: tuple[str, str] | None) -> Controller:
    options = {}
    if certificate:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        options = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    controller = Controller(box, hostname="127.0.0.1", port=_free_port(), authenticator=box.authenticate,
                            **options)
    controller.start()
    return controller


def _send(config: SmtpConfig) -> None:
    asyncio.run(send_email(config, CONTACT, Message(alert_for("ath-1"), b"png", 1)))


def test_mail_goes_over_starttls_with_a_login(certificate) -> None:
    box = Mailbox()
    server = _server(box, certificate)
    try:
        _send(SmtpConfig("127.0.0.1", server.port, username="alerts", password="s3cret", ca_file=certificate[0],
                         require_tls=True))
    finally:
        server.stop()
    assert box.logins == [b"alerts"] and box.messages[0]["To"] == "dr@clinic.example"


def test_a_server_without_starttls_gets_nothing_when_tls_is_required() -> None:
    box = Mailbox()
    server = _server(box, None)
    try:
        with pytest.raises(DeliveryError, match="STARTTLS") as raised:
            _send(SmtpConfig("127.0.0.1", server.port, require_tls=True))
    finally:
        server.stop()
    assert box.messages == [] and not raised.value.retryable


def test_tls_is_required_off_this_host_and_a_password_never_goes_in_clear() -> None:
    assert SmtpConfig("smtp.clinic.example", 587).tls_required()
    assert not SmtpConfig("127.0.0.1", 25).tls_required() and not SmtpConfig("localhost", 25).tls_required()
    assert SmtpConfig("127.0.0.1", 25, username="u", password="p").tls_required()
    assert "p4ss" not in repr(SmtpConfig("h", 25, username="u", password="p4ss"))
