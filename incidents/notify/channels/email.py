"""The email channel: one incident is one mail thread per recipient, sent over SMTP.

Each send() is one SMTP session (connect, TLS, login, one message, quit) run on a private
event loop, and its outcome is classified for the notify worker, which owns retries:
4xx replies and network trouble may pass, 5xx replies and configuration mistakes will not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import ssl
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from typing import Any, Literal, TypeVar

import aiosmtplib
from jinja2 import TemplateError
from pydantic import BaseModel, Field

from incidents.notify.base import Notification, SendResult, register
from incidents.notify.channels.email_render import EmailTemplates

T = TypeVar("T")

# RCPT replies that say the mailbox or address is wrong, used when the server gives no
# enhanced status code (RFC 3463) to go by.
UNREACHABLE_CODES = frozenset({550, 551, 553})
# QUIT is a courtesy once the message is in (or refused); it must not hold up the worker.
QUIT_TIMEOUT = 5.0
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


class EmailSettings(BaseModel):
    """How to reach the SMTP server and what the mails look like."""

    host: str = ""
    port: int = 587
    username: str = ""
    # Kept out of repr so a logged settings object does not leak it.
    password: str = Field(default="", repr=False)
    # The From address, optionally with a display name ("Incidents <incidents@example.com>").
    sender: str = "incidents@localhost"
    tls: Literal["starttls", "tls", "none"] = "starttls"
    # A deadline for the whole attempt, not only for each SMTP command.
    timeout_seconds: float = 15
    validate_certs: bool = True
    # Base for relative incident links.
    public_url: str = ""
    subject_template: str | None = None
    text_template: str | None = None
    html_template: str | None = None


class _StartTLSUnavailable(Exception):
    """STARTTLS is required but the server does not offer it."""


class _AuthUnavailable(Exception):
    """A username is configured but the server does not offer AUTH."""


# Failures where the server is up and talking, so the session can end with QUIT.
_ANSWERED = (
    aiosmtplib.SMTPResponseException,
    aiosmtplib.SMTPRecipientsRefused,
    _StartTLSUnavailable,
    _AuthUnavailable,
)


@dataclass(slots=True)
class _Progress:
    # Set once the server has taken the message: a failure after that (QUIT timing out)
    # must not make the worker send it a second time.
    accepted: bool = False


class EmailNotifier:
    """Sends incident notifications as email over SMTP."""

    name = "email"

    def __init__(self, settings: EmailSettings) -> None:
        """Compile the templates; raises ValueError for a broken template override."""
        self.settings = settings
        self.templates = EmailTemplates(
            subject=settings.subject_template,
            text=settings.text_template,
            html=settings.html_template,
            public_url=settings.public_url,
        )
        self._from_address = parseaddr(settings.sender)[1] or settings.sender
        domain = self._from_address.rpartition("@")[2]
        # make_msgid would otherwise look up this host's FQDN, slow and often meaningless.
        self._msgid_domain = domain or "localhost"

    def send(self, notification: Notification) -> SendResult:
        """Send one email about the incident to the target address; one SMTP attempt."""
        if not self.settings.host:
            return SendResult(ok=False, error="email channel: no SMTP host configured")
        recipient = valid_address(notification.target)
        if recipient is None:
            return SendResult(
                ok=False,
                error=f"not a valid email address: {notification.target!r}",
                target_unreachable=True,
            )
        try:
            message = self.compose(notification)
        except TemplateError as exc:
            return SendResult(ok=False, error=f"email template failed: {exc}")
        except ValueError as exc:
            # A header value the email package refuses (a newline in a stored Message-ID).
            return SendResult(ok=False, error=f"email could not be built: {exc}")
        message_id = str(message["Message-ID"])
        progress = _Progress()
        try:
            _run(self._deliver(message, recipient, progress))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if not progress.accepted:
                return classify(exc)
        except (_StartTLSUnavailable, _AuthUnavailable) as exc:
            return SendResult(ok=False, error=str(exc))
        thread = dict(notification.thread)
        if not thread.get("message_id"):
            thread = {"message_id": message_id}
        return SendResult(ok=True, provider_id=message_id, thread=thread)

    def message_id(self, n: Notification) -> str:
        """The same for every attempt at one notification: SMTP offers no way to ask
        whether an attempt whose answer was lost went through, so a resend carries the
        first attempt's Message-ID, and mail systems show the two as one message."""
        if n.delivery_id > 0:
            local = f"incident-{n.incident_id}.notification-{n.delivery_id}"
            return f"<{local}@{self._msgid_domain}>"
        return make_msgid(domain=self._msgid_domain)

    def compose(self, n: Notification) -> EmailMessage:
        """The message for one notification, threaded onto the incident's first mail."""
        rendered = self.templates.render(n)
        message = EmailMessage()
        message["Subject"] = rendered.subject
        message["From"] = self.settings.sender
        message["To"] = n.target
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = self.message_id(n)
        first = n.thread.get("message_id", "").strip()
        if first:
            references = n.thread.get("references", "").split()
            if first not in references:
                references.append(first)
            message["In-Reply-To"] = first
            message["References"] = " ".join(references)
        message["X-Incident-Id"] = str(n.incident_id)
        # RFC 3834: vacation responders and ticket systems should not answer a page.
        message["Auto-Submitted"] = "auto-generated"
        # Exchange ignores Auto-Submitted for out-of-office replies; this asks it too.
        message["X-Auto-Response-Suppress"] = "All"
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    async def _deliver(self, message: EmailMessage, recipient: str, progress: _Progress) -> None:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout_seconds,
            use_tls=s.tls == "tls",
            # STARTTLS is done by hand below, so that a server without it is told apart
            # from every other failure; aiosmtplib only raises a bare SMTPException.
            start_tls=False,
            validate_certs=s.validate_certs,
        )
        answered: Exception | None = None
        async with asyncio.timeout(s.timeout_seconds):
            try:
                await client.connect()
                await self._transaction(client, message, recipient)
                progress.accepted = True
            except _ANSWERED as exc:
                answered = exc
            except BaseException:
                # The server is gone or too slow: no QUIT, just drop the connection.
                client.close()
                raise
        # A server that answered is told goodbye even after a refusal: dropping a TLS
        # session without QUIT leaves its shutdown half done when the loop ends.
        try:
            await client.quit(timeout=min(s.timeout_seconds, QUIT_TIMEOUT))
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            client.close()
        if answered is not None:
            raise answered

    async def _transaction(
        self, client: aiosmtplib.SMTP, message: EmailMessage, recipient: str
    ) -> None:
        s = self.settings
        if s.tls == "starttls":
            await client.ehlo()
            if not client.supports_extension("starttls"):
                raise _StartTLSUnavailable(
                    f"SMTP server {s.host}:{s.port} does not offer STARTTLS, which "
                    'tls="starttls" requires (use tls="tls" for implicit TLS)'
                )
            await client.starttls()
        if s.username:
            await client.ehlo()
            if not client.supports_extension("auth"):
                raise _AuthUnavailable(
                    f"SMTP server {s.host}:{s.port} does not offer AUTH, but a "
                    "username is configured"
                )
            await client.login(s.username, s.password)
        await client.send_message(message, sender=self._from_address, recipients=[recipient])


def valid_address(target: str) -> str | None:
    """The bare address in a target ("a@b.example" or "Name <a@b.example>"), else None."""
    if any(c in target for c in "\r\n\0"):
        return None
    # Exactly one address: "a@x, b@y" would put two in To: and one in the envelope.
    found = getaddresses([target])
    if len(found) != 1:
        return None
    address = found[0][1]
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or "@" in local or any(c.isspace() for c in address):
        return None
    return address


def classify(exc: BaseException) -> SendResult:
    """Turn an SMTP or network failure into a SendResult (retryable or not)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return _refused(f"recipient {exc.recipient} refused", exc.code, exc.message, rcpt=True)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _refused("SMTP authentication failed", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _refused(f"sender {exc.sender} refused", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _refused("message refused", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return _refused("SMTP server refused the connection", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _refused("SMTP error", exc.code, exc.message)
    certificate = _certificate_error(exc)
    if certificate is not None:
        return SendResult(
            ok=False,
            error=f"TLS certificate verification failed: {certificate.verify_message or exc}",
        )
    if isinstance(exc, TimeoutError):
        detail = f": {exc}" if str(exc) else " (no answer before the deadline)"
        return SendResult(ok=False, retryable=True, error=f"SMTP timed out{detail}")
    if isinstance(exc, (ConnectionError, OSError)):
        return SendResult(ok=False, retryable=True, error=f"SMTP connection failed: {exc}")
    # Anything else aiosmtplib raises is a capability the server lacks (SMTPUTF8, a
    # required extension): the same request will fail the same way.
    return SendResult(ok=False, error=f"SMTP failed: {exc}")


def _refused(what: str, code: int, text: str, *, rcpt: bool = False) -> SendResult:
    error = f"{what}: {code} {text.strip()}"
    # RFC 5321 4.5.3.1.10: a 552 to RCPT is historically "mailbox full", i.e. temporary.
    if code // 100 == 4 or (rcpt and code == 552):
        return SendResult(ok=False, retryable=True, error=error)
    if code // 100 == 5 and rcpt and _mailbox_problem(code, text):
        return SendResult(ok=False, error=error, target_unreachable=True)
    if code == 535:
        error += " (check the SMTP username and password)"
    # 5xx for anything but the mailbox (a policy or relay refusal, bad credentials) and
    # replies outside 4xx/5xx are the sender's setup, not the recipient's; no retry helps.
    return SendResult(ok=False, error=error)


def _mailbox_problem(code: int, text: str) -> bool:
    enhanced = _ENHANCED.match(text)
    if enhanced:
        # X.1.* is addressing, X.2.* the mailbox; X.7.* (relay denied) and the rest are
        # about the sending side and must not mark a good address unreachable.
        return enhanced.group(2) in {"1", "2"}
    return code in UNREACHABLE_CODES


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (an async caller): asyncio.run would refuse, so
    # the session gets a loop of its own on a helper thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@register("email")
def build_email(settings: Any) -> EmailNotifier:
    """Build the email channel from EmailSettings, a mapping, or an object with its fields."""
    if isinstance(settings, EmailSettings):
        return EmailNotifier(settings)
    if isinstance(settings, Mapping):
        return EmailNotifier(EmailSettings.model_validate(dict(settings)))
    return EmailNotifier(EmailSettings.model_validate(settings, from_attributes=True))


__all__ = ["EmailNotifier", "EmailSettings", "build_email", "classify", "valid_address"]
