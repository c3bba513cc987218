"""The simulators bill known prices, shaped like the real APIs: Twilio's ``price`` is null
on the Message resource until the status is final; Telnyx's ``cost`` is per part."""

from __future__ import annotations

from decimal import Decimal

from gateway.sandbox.behaviours import Outcome
from gateway.sandbox.state import TwilioMessage
from gateway.sandbox.twilio_wire import finalize, mark_sent, message_resource
from providers.twilio.message_resource import cost


def _message(segments: int, media: list[str] | None = None) -> TwilioMessage:
    return TwilioMessage(
        id="SM" + "0" * 32,
        to="+14155550100",
        from_=None,
        body="x",
        media=media or [],
        status="queued",
        outcome=Outcome.DELIVERED,
        segments=segments,
        created_at=0.0,
        updated_at=0.0,
        account_sid="AC" + "0" * 32,
        messaging_service_sid=None,
        status_callback=None,
    )


def test_twilio_price_is_null_until_final_then_per_segment() -> None:
    message = _message(segments=3)
    mark_sent(message, 1.0)
    sent = message_resource(message)
    assert (sent["status"], sent["price"]) == ("sent", None)
    finalize(message, 2.0)
    final = message_resource(message)
    assert (final["price"], final["price_unit"]) == ("-0.02490", "USD")
    # What the gateway makes of it: a positive exact amount.
    parsed = cost(final["price"], final["price_unit"])
    assert parsed is not None
    assert (parsed.amount, parsed.currency) == (Decimal("0.02490"), "USD")


def test_twilio_mms_is_priced_per_message() -> None:
    message = _message(segments=4, media=["https://e.test/a.png"])
    finalize(message, 2.0)
    assert message_resource(message)["price"] == "-0.02200"
