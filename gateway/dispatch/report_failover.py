"""Failover on a negative delivery report: the provider accepted the message, then the
carrier reported it ``undelivered`` or ``failed``. When the message's routing rule names the
report's failure class in ``failover_on_report``, the message goes back to the queue for the
rule's next account instead of ending, up to ``max_sends`` accepted sends in all.

Never for opted-out or invalid numbers (configuration refuses those classes), never for a
message whose app forced an account, never past the message's validity, never for a message
whose body data retention has blanked. The old provider id
stays on the message until the next send is recorded, so a late ``delivered`` for the first
send still lands and stops the second one from being made.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import Attempt, Message, WebhookEvent
from gateway.retention import is_blanked
from gateway.routing.model import RoutingConfig, Rule
from gateway.system.metrics import FAILOVERS
from providers import DeliveryStatus
from providers.report_failures import report_failure

logger = logging.getLogger(__name__)


class ReportFailover:
    """Decides, for one routing configuration, whether a negative report sends again."""

    def __init__(self, config: RoutingConfig) -> None:
        self._rules: dict[str, Rule] = {
            rule.name: rule for rule in config.rules if rule.failover_on_report
        }

    @property
    def enabled(self) -> bool:
        return bool(self._rules)

    async def reroute(
        self, session: AsyncSession, message: Message, event: WebhookEvent, now: datetime
    ) -> bool:
        """Requeue ``message`` (row-locked by the caller) for its rule's next account, if the
        policy says so; True when it did. The caller has checked that ``event`` is a
        negative report that would otherwise become the message's status."""
        rule = self._rules.get(message.route_rule or "")
        account, kind = message.provider_account, message.provider_kind
        if rule is None or account is None or kind is None or message.requested_account:
            return False
        failure = report_failure(kind, event.error_code)
        if failure not in rule.failover_on_report:
            return False
        if message.valid_until is not None and now >= message.valid_until:
            return False
        if is_blanked(bool(message.body), message.media_urls):
            return False  # data retention blanked it: nothing left to send
        excluded = list(dict.fromkeys([*(message.excluded_accounts or []), account]))
        remaining = [a for a in rule.accounts if a not in excluded]
        if not remaining or await _sends(session, message.message_id) >= rule.max_sends:
            return False
        message.status = DeliveryStatus.ACCEPTED.value
        message.next_attempt_at = now
        message.excluded_accounts = excluded
        message.error_code = event.error_code
        message.error_detail = (
            f"{event.status} report ({failure.value}) from {account}: "
            "sending again through the next account of the route"
        )
        message.status_occurred_at = None
        message.completed_at = None
        message.updated_at = now
        FAILOVERS.labels(from_account=account, to_account=remaining[0]).inc()
        logger.info(
            "message failed over after a delivery report",
            extra={
                "message_id": message.message_id,
                "account": account,
                "error_code": event.error_code,
                "failure": failure.value,
            },
        )
        return True


async def _sends(session: AsyncSession, message_id: str) -> int:
    """How many providers accepted the message so far."""
    return (
        await session.execute(
            select(func.count())
            .select_from(Attempt)
            .where(Attempt.message_id == message_id, Attempt.outcome == "sent")
        )
    ).scalar_one()
