"""API keys: named, scoped, stored hashed, revocable; the scopes they can carry."""
