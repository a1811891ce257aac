"""Remediation playbooks: declarative files matched to incidents, run step by step."""
