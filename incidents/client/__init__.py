"""The operator's client of a running service: connection settings, HTTP, and tables.

Used by the client commands (`incidents alert|incident|silence|oncall|postmortem|report`),
which talk to the API as amtool talks to Alertmanager, and load no server settings.
"""
