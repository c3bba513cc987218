"""Inbound messages as apps see them: ``GET /v1/inbound``."""
