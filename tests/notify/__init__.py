"""Notification channels and routing."""
