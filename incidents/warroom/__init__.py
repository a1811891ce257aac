"""The P0 war room: a Slack channel per P0 incident, made, filled and archived through
the notify outbox (see incidents.notify.channels.warroom)."""
