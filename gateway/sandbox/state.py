"""In-memory state of the simulated providers: credentials, accepted messages, outages, hangs.

Everything time-dependent reads ``SandboxState.clock`` (POSIX seconds, like ``time.time``) so
that tests can move time forward without sleeping. The state is plain process memory: it is a
demonstration and test double, not a store, and it is lost on restart.
"""

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Self, TypeVar

from gateway.sandbox.behaviours import Outcome

Clock = Callable[[], float]
"""Returns the current time as POSIX seconds (``time.time`` by default)."""


@dataclass(frozen=True, slots=True)
class SandboxCredentials:
    """The credentials each simulator accepts; configure the gateway's providers with the same."""

    twilio_account_sid: str
    twilio_auth_token: str
    telnyx_api_key: str

    @classmethod
    def generate(cls) -> Self:
        """Random credentials in the providers' own formats (fresh for every process)."""
        return cls(
            twilio_account_sid="AC" + secrets.token_hex(16),
            twilio_auth_token=secrets.token_hex(16),
            telnyx_api_key="KEY" + secrets.token_hex(16).upper() + "_" + secrets.token_urlsafe(16),
        )

    @classmethod
    def fixed(cls) -> Self:
        """Documented, well-known credentials for demos and docs (never use them elsewhere)."""
        return cls(
            # "sandbox" in hex, padded to Twilio's 32 hex digits.
            twilio_account_sid="AC73616e64626f78000000000000000000",
            twilio_auth_token="73616e64626f78746f6b656e00000000",  # noqa: S106 (public, fake)
            telnyx_api_key="KEYSANDBOX0000000000000000000000_sandbox",
        )


@dataclass(slots=True, kw_only=True)
class SimulatedMessage:
    """What a simulator accepted; mutable because its delivery status progresses.

    ``status`` is in the provider's own vocabulary (Twilio ``queued``/``delivered``…, Telnyx
    ``queued``/``delivery_failed``…); ``settled`` turns true once the final state is applied.
    """

    id: str
    to: str
    from_: str | None
    body: str | None
    media: list[str]
    status: str
    outcome: Outcome
    segments: int
    created_at: float
    updated_at: float
    sent_at: float | None = None
    settled: bool = False


@dataclass(slots=True, kw_only=True)
class TwilioMessage(SimulatedMessage):
    account_sid: str
    messaging_service_sid: str | None
    status_callback: str | None
    error_code: int | None = None
    error_message: str | None = None
    # Positive amount; the wire shows it negated, as Twilio reports charges.
    price: Decimal | None = None


@dataclass(slots=True, kw_only=True)
class TelnyxMessage(SimulatedMessage):
    message_type: str
    messaging_profile_id: str
    subject: str | None
    webhook_url: str | None
    webhook_failover_url: str | None
    encoding: str
    cost: Decimal
    completed_at: float | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outage:
    """Every API call of one simulator answers ``status`` until ``ends_at`` (POSIX seconds)."""

    status: int
    ends_at: float

    def retry_after(self, now: float) -> int | None:
        """Whole seconds left, for Retry-After; only 429 and 503 carry one (RFC 9110 10.2.3)."""
        if self.status not in (429, 503):
            return None
        return max(1, math.ceil(self.ends_at - now))  # rounding down invites an early retry


MessageT = TypeVar("MessageT", bound=SimulatedMessage)

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Simulator(Generic[MessageT]):
    """One simulated provider: what it accepted, its outage window and its hooks."""

    name: str
    created: list[MessageT] = field(default_factory=list)
    outage: Outage | None = None
    # Awaited (after the response is sent) with each accepted message. The later status
    # callback feature plugs in here without touching the routes.
    on_created: list[Callable[[MessageT], Awaitable[None]]] = field(default_factory=list)
    _by_id: dict[str, MessageT] = field(default_factory=dict, init=False, repr=False)

    def store(self, message: MessageT) -> None:
        self.created.append(message)
        self._by_id[message.id] = message

    def get(self, message_id: str) -> MessageT | None:
        return self._by_id.get(message_id)

    async def notify_created(self, message: MessageT) -> None:
        """Run every ``on_created`` hook; one failing hook neither stops the others nor the app."""
        for hook in list(self.on_created):
            try:
                await hook(message)
            except Exception:
                # Never the body or the number: only which simulator and which message.
                _log.exception("sandbox %s on_created hook failed for %s", self.name, message.id)

    def active_outage(self, now: float) -> Outage | None:
        """The outage in force at ``now``; an expired one is forgotten."""
        if self.outage is not None and now >= self.outage.ends_at:
            self.outage = None
        return self.outage

    def start_outage(self, status: int, seconds: float, now: float) -> Outage:
        self.outage = Outage(status=status, ends_at=now + seconds)
        return self.outage

    def end_outage(self) -> None:
        self.outage = None


class _Waiter:
    """An asyncio.Event and the loop it waits in, so that any thread can wake it."""

    __slots__ = ("event", "loop")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def wake(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.event.set()
            return
        # Litestar's test clients serve the app from a portal thread with its own loop.
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(self.event.set)


class HangGate:
    """Holds the 9004 requests open until ``release_all`` or their time limit.

    Waiters are created per call, inside the loop that waits, so one gate serves apps run
    by any loop or thread (uvicorn, the test clients' portal threads, the test's own loop).
    """

    def __init__(self) -> None:
        self._held: set[_Waiter] = set()
        self._watchers: set[_Waiter] = set()

    @property
    def holding(self) -> int:
        """How many requests are being held right now."""
        return len(self._held)

    async def hold(self, seconds: float) -> None:
        release = _Waiter()
        self._held.add(release)
        for watcher in list(self._watchers):
            watcher.wake()
        try:
            async with asyncio.timeout(seconds):
                await release.event.wait()
        except TimeoutError:
            pass
        finally:
            self._held.discard(release)

    def release_all(self) -> int:
        """Let every held request answer now; returns how many were released."""
        held = list(self._held)
        for release in held:
            release.wake()
        return len(held)

    async def wait_until_holding(self, count: int = 1) -> None:
        """Return once at least ``count`` requests are held (synchronisation for tests)."""
        while len(self._held) < count:
            watcher = _Waiter()
            self._watchers.add(watcher)
            try:
                # Re-checked after registering: a hold may have begun in between.
                if len(self._held) < count:
                    await watcher.event.wait()
            finally:
                self._watchers.discard(watcher)


@dataclass(slots=True)
class SandboxState:
    """All the sandbox knows. One instance per app; tests build their own."""

    credentials: SandboxCredentials = field(default_factory=SandboxCredentials.generate)
    clock: Clock = time.time
    # How long a 9004 request is held before it answers 504. Longer than any sane client
    # timeout by default, so the client gives up first, as it would against a dead provider.
    hang_seconds: float = 30.0
    # Accepted messages report their initial status until this many seconds after creation,
    # their final status afterwards. 0: a fetch always sees the final status.
    settle_after_seconds: float = 0.0
    twilio: Simulator[TwilioMessage] = field(default_factory=lambda: Simulator("twilio"))
    telnyx: Simulator[TelnyxMessage] = field(default_factory=lambda: Simulator("telnyx"))
    hangs: HangGate = field(default_factory=HangGate)

    def now(self) -> float:
        return self.clock()
