"""One module per channel, each registered by name in `incidents.notify.base`."""
