"""Events to internal apps: an outbox written in the same transaction as each change
(``record``), signed with Standard Webhooks (``signing``, ``secrets``), delivered by a loop
of its own (``delivery``, ``outbox``) and listed by ``GET /v1/events`` (``controller``)."""
