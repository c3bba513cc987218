"""The durable dispatcher: claim due messages from the outbox, send, record, retry."""
