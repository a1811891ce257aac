"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, in a thread of the test process.

It keeps every message it accepts (parsed), can speak STARTTLS or implicit TLS with a
self-signed certificate made at test time, can require AUTH, and can be told to refuse:
a one-shot reply to the next RCPT (451), or a standing reply for one address (550).

    with SmtpServer(tls="starttls", cert=self_signed_cert(tmp_path)) as server:
        ...send to server.host:server.port...
        assert server.messages[0].message["Subject"] == ...
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key, PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes
    # Whether the session was encrypted (STARTTLS or implicit TLS) when DATA came.
    tls: bool
    # The login the session authenticated as, if any.
    login: str | None


@dataclass
class _Faults:
    next_rcpt: list[str] = field(default_factory=list)
    next_data: list[str] = field(default_factory=list)
    by_address: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def self_signed_cert(
    directory: Path, hostname: str = "localhost", *, use_openssl: bool = False
) -> CertPair:
    """Write a self-signed certificate for hostname and 127.0.0.1 into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(cert=directory / "smtp-cert.pem", key=directory / "smtp-key.pem")
    if not use_openssl:
        try:
            _cert_with_cryptography(pair, hostname)
            return pair
        except ImportError:
            # cryptography is not a declared dependency; the openssl CLI does the same.
            pass
    _cert_with_openssl(pair, hostname)
    return pair


def _cert_with_cryptography(pair: CertPair, hostname: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert_with_openssl(pair: CertPair, hostname: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither the cryptography package nor openssl is available")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname},IP:{HOST}",
            "-keyout", str(pair.key), "-out", str(pair.cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip


class _Handler:
    """aiosmtpd hooks: apply the programmed faults, keep what was accepted."""

    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Refuse with a programmed fault, or accept the recipient."""
        reply = self.owner._rcpt_fault(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Refuse with a programmed fault, or parse and keep the message."""
        reply = self.owner._data_fault()
        if reply is not None:
            return reply
        raw = envelope.original_content or b""
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.owner._store(
            Received(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                # Parsed with LF line ends, so bodies compare equal to what was rendered.
                message=cast(
                    EmailMessage,
                    message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default),
                ),
                raw=raw,
                # session.ssl is set by STARTTLS only; implicit TLS shows on the transport.
                tls=session.ssl is not None
                or (
                    server.transport is not None
                    and server.transport.get_extra_info("sslcontext") is not None
                ),
                login=login if session.authenticated else None,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 and a free port; a context manager."""

    def __init__(
        self,
        *,
        tls: Literal["none", "starttls", "tls"] = "none",
        cert: CertPair | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """Configure (not start) the server; STARTTLS and implicit TLS need a cert."""
        if tls != "none" and cert is None:
            raise ValueError(f"tls={tls!r} needs a certificate (self_signed_cert)")
        self.host = HOST
        self.port = free_port()
        self.tls = tls
        self.username = username
        self.password = password
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._faults = _Faults()
        self.auth_attempts = 0
        context: ssl.SSLContext | None = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert.cert), str(cert.key))
        kwargs: dict[str, Any] = {}
        if tls == "starttls":
            kwargs["tls_context"] = context
        if username is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # Over STARTTLS a real server offers AUTH only once encrypted; with no TLS
            # at all the test still wants AUTH, so allow it in the clear.
            kwargs["auth_require_tls"] = tls == "starttls"
        self._controller = Controller(
            _Handler(self),
            hostname=HOST,
            port=self.port,
            ssl_context=context if tls == "tls" else None,
            ready_timeout=5.0,
            **kwargs,
        )
        self.running = False

    @property
    def messages(self) -> list[Received]:
        """Every message accepted so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def fail_next_rcpt(self, code: int = 451, text: str = "4.3.0 Try again later") -> None:
        """Answer the next RCPT (whatever the address) with this reply, once."""
        with self._lock:
            self._faults.next_rcpt.append(f"{code} {text}")

    def fail_next_data(self, code: int = 554, text: str = "5.6.0 Message refused") -> None:
        """Answer the end of the next DATA with this reply, once (nothing is kept)."""
        with self._lock:
            self._faults.next_data.append(f"{code} {text}")

    def reject(self, address: str, code: int = 550, text: str = "5.1.1 No such user") -> None:
        """Answer every RCPT to this address with this reply."""
        with self._lock:
            self._faults.by_address[address.lower()] = f"{code} {text}"

    def clear_faults(self) -> None:
        """Forget every programmed fault."""
        with self._lock:
            self._faults = _Faults()

    def start(self) -> SmtpServer:
        """Start listening; returns self."""
        self._controller.start()
        self.running = True
        return self

    def stop(self) -> None:
        """Stop listening; the port then refuses connections."""
        if self.running:
            self._controller.stop()
            self.running = False

    def __enter__(self) -> SmtpServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def _rcpt_fault(self, address: str) -> str | None:
        with self._lock:
            if self._faults.next_rcpt:
                return self._faults.next_rcpt.pop(0)
            return self._faults.by_address.get(address.lower())

    def _data_fault(self) -> str | None:
        with self._lock:
            return self._faults.next_data.pop(0) if self._faults.next_data else None

    def _store(self, received: Received) -> None:
        with self._lock:
            self._messages.append(received)

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        with self._lock:
            self.auth_attempts += 1
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        # handled=False: aiosmtpd then answers a failure itself, with 535.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
