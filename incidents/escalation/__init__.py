"""Escalation: policies, their frozen copies on incidents, and the sweep that climbs them."""
