"""Twilio's codes for a target that can never be reached this way (retrying only annoys
Twilio), apart from the channels so that the outbox can read them without loading any."""

from __future__ import annotations

UNREACHABLE: dict[int, str] = {
    21610: "the recipient replied STOP and has unsubscribed",
    21211: "the 'To' number is not a valid phone number",
    21614: "the 'To' number is not a mobile number (a landline?)",
    30006: "landline or unreachable carrier",
}
