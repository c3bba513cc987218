"""Bodies of ``/v1/consents`` and ``/v1/opt-outs``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

MAX_EVIDENCE = 2000

#: What an app may name as the source of what it writes; ``keyword`` and ``provider`` are
#: the gateway's own (a person's text, a provider's refusal).
WritableSource = Literal["api", "import"]

Evidence = (
    Annotated[
        str,
        msgspec.Meta(
            max_length=MAX_EVIDENCE,
            description="How consent was given or withdrawn (form, call, paper), for audits",
        ),
    ]
    | None
)
Timestamp = Annotated[
    datetime | None,
    msgspec.Meta(description="When the person said it (ISO 8601 with a zone); default now"),
]
Sender = Annotated[
    str | None,
    msgspec.Meta(description="Only this sender number (E.164); absent: every sender"),
]


class ConsentWrite(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/consents/{number}``."""

    status: Literal["opted_in", "opted_out"] = "opted_in"
    source: WritableSource = "api"
    timestamp: Timestamp = None
    evidence: Evidence = None
    sender: Sender = None


class OptOutCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/opt-outs``."""

    number: str
    source: WritableSource = "api"
    timestamp: Timestamp = None
    evidence: Evidence = None
    sender: Sender = None


class ScopeView(msgspec.Struct, frozen=True):
    """The current word for one scope: ``sender`` null means every sender."""

    sender: str | None
    status: str
    source: str
    occurred_at: datetime
    record_id: str


class RecordView(msgspec.Struct, frozen=True):
    record_id: str
    status: str
    sender: str | None
    source: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str | None
    evidence: str | None
    reference: str | None


class ConsentView(msgspec.Struct, frozen=True):
    """``status`` is the company-wide word: ``opted_out``, ``opted_in`` or ``unknown`` (no
    record); per-sender words are in ``scopes``; ``history`` is newest first."""

    number: str
    status: str
    scopes: list[ScopeView]
    history: list[RecordView]


class OptOutView(msgspec.Struct, frozen=True):
    number: str
    sender: str | None
    source: str
    opted_out_at: datetime
    record_id: str


class OptOutPage(msgspec.Struct, frozen=True):
    data: list[OptOutView]
    next_cursor: str | None
