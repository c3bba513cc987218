"""API keys of internal apps: creation, lookup, revocation and the request guard."""
