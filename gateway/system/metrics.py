"""Prometheus metrics (``/metrics``). Counters live at module level because
prometheus_client's registry is process-wide by design; labels never carry numbers or
bodies."""

from __future__ import annotations

from prometheus_client import Counter

WEBHOOK_VERIFICATIONS = Counter(
    "sms_gateway_webhook_verifications_total",
    "Provider callbacks by provider and verification result",
    ["provider", "result"],
)
WEBHOOK_EVENTS = Counter(
    "sms_gateway_webhook_events_total",
    "Verified callback events by provider and what became of them",
    ["provider", "outcome"],
)
MESSAGES_ACCEPTED = Counter(
    "sms_gateway_messages_accepted_total", "Messages accepted by the send API", ["app"]
)
PROVIDER_ATTEMPTS = Counter(
    "sms_gateway_provider_attempts_total",
    "Provider calls by account and outcome",
    ["account", "outcome"],
)
FAILOVERS = Counter(
    "sms_gateway_failovers_total",
    "Messages moved from one provider account to the next",
    ["from_account", "to_account"],
)
