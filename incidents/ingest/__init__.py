"""Payload adapters, fingerprints and the durable write of incoming alerts."""
