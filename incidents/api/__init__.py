"""The HTTP layer: parse, authorize, hand to the domain, translate errors."""
