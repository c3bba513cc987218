"""The send API: validation, idempotent acceptance into the outbox, look-ups."""
