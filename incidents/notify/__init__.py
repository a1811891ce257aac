"""Notifications: routing incident events to receivers, and the channels that deliver them."""
