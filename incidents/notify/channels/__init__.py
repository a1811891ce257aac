"""One module per channel; importing this package registers them all by name."""

from incidents.notify.channels import console, email, slack, sms, voice, warroom, webhook

__all__ = ["console", "email", "slack", "sms", "voice", "warroom", "webhook"]
