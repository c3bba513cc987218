"""The baseline server: a bare Litestar app that decodes the same request body and answers
202, nothing else. Served by uvicorn with the gateway's own settings (``uvicorn
bench.baseline:app``), so a ratio gateway/baseline measures what the gateway adds."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, post
from litestar.params import JSONBody


@post("/v1/messages", status_code=202)
async def accept(data: JSONBody[dict[str, Any]]) -> dict[str, str]:
    """The send API's shape: decode the JSON object, answer 202."""
    return {"status": "accepted"}


async def decode_callback(request: Request[Any, Any, Any]) -> None:
    """Decode a callback's body: JSON for Telnyx, a form for Twilio."""
    if request.headers.get("content-type", "").startswith("application/json"):
        await request.json()
    else:
        await request.form()


@post("/webhooks/sms", status_code=202)
async def webhook(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The webhook's shape: decode the body, answer."""
    await decode_callback(request)
    return {"status": "accepted"}


app = Litestar(route_handlers=[accept, webhook], logging_config=None, debug=False)
