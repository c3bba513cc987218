"""In-memory state of the simulated providers: credentials, accepted messages, outages, hangs,
and the callbacks they make to the gateway.

Everything time-dependent reads ``SandboxState.clock`` (POSIX seconds, like ``time.time``) so
that tests can move time forward without sleeping. The state is plain process memory: it is a
demonstration and test double, not a store, and it is lost on restart.
"""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Generic, Self, TypeVar

import httpx
from litestar.background_tasks import BackgroundTask
from nacl.signing import SigningKey

from gateway.sandbox.behaviours import Outcome
from gateway.sandbox.tasks import CallbackAttempt, CallbackTasks, Waiter

Clock = Callable[[], float]
"""Returns the current time as POSIX seconds (``time.time`` by default)."""

# Seed of the fixed() Telnyx key pair. Public and fake, like every fixed() credential:
# anyone can sign "Telnyx" webhooks with it, so no real deployment may trust its public key.
_FIXED_TELNYX_SEED: Final = b"sandbox telnyx ed25519 seed".ljust(32, b"\0")


@dataclass(frozen=True, slots=True)
class SandboxCredentials:
    """The credentials each simulator accepts; configure the gateway's providers with the same."""

    twilio_account_sid: str
    twilio_auth_token: str
    telnyx_api_key: str
    # Telnyx signs webhooks with an Ed25519 key of its own (PROTOCOLS.md B.1); the gateway
    # is configured with the public half, ``telnyx_public_key``.
    telnyx_signing_key: SigningKey = field(default_factory=SigningKey.generate, repr=False)

    @property
    def telnyx_public_key(self) -> str:
        """Base64 of the raw 32-byte verify key: the form the Telnyx portal shows."""
        return base64.b64encode(bytes(self.telnyx_signing_key.verify_key)).decode()

    @classmethod
    def generate(cls) -> Self:
        """Random credentials in the providers' own formats (fresh for every process)."""
        return cls(
            twilio_account_sid="AC" + secrets.token_hex(16),
            twilio_auth_token=secrets.token_hex(16),
            telnyx_api_key="KEY" + secrets.token_hex(16).upper() + "_" + secrets.token_urlsafe(16),
            telnyx_signing_key=SigningKey.generate(),
        )

    @classmethod
    def from_seed(cls, seed: str) -> Self:
        """Credentials derived from a secret seed: every process given the same seed gets
        the same ones (``serve --sandbox`` and ``worker --sandbox URL``, through
        ``GATEWAY_SANDBOX_SEED``). Each value is HMAC-SHA256(seed, its own label), so no
        credential reveals the seed or another credential; the Telnyx signing key is
        derived the same way (32 bytes, an Ed25519 seed)."""
        if not seed:
            raise ValueError("the sandbox seed is empty")

        def derive(label: str) -> bytes:
            return hmac.new(
                seed.encode(), f"sms-gateway sandbox {label}".encode(), hashlib.sha256
            ).digest()

        api_key_secret = base64.urlsafe_b64encode(derive("telnyx api key secret")[:16])
        return cls(
            twilio_account_sid="AC" + derive("twilio account sid")[:16].hex(),
            twilio_auth_token=derive("twilio auth token")[:16].hex(),
            telnyx_api_key="KEY"
            + derive("telnyx api key")[:16].hex().upper()
            + "_"
            + api_key_secret.rstrip(b"=").decode(),
            telnyx_signing_key=SigningKey(derive("telnyx signing key")),
        )

    @classmethod
    def fixed(cls) -> Self:
        """Documented, well-known credentials for demos and docs (never use them elsewhere)."""
        return cls(
            # "sandbox" in hex, padded to Twilio's 32 hex digits.
            twilio_account_sid="AC73616e64626f78000000000000000000",
            twilio_auth_token="73616e64626f78746f6b656e00000000",  # noqa: S106 (public, fake)
            telnyx_api_key="KEYSANDBOX0000000000000000000000_sandbox",
            telnyx_signing_key=SigningKey(_FIXED_TELNYX_SEED),
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
ItemT = TypeVar("ItemT")


def keep_latest(items: list[ItemT], keep: int) -> list[ItemT]:
    """Forget the oldest of ``items`` (in place) once they are a tenth over ``keep``, down
    to ``keep``: a trim now and then, not a shift of the list at every append. Returns
    what was forgotten."""
    if len(items) <= keep + keep // 10:
        return []
    forgotten = items[: len(items) - keep]
    del items[: len(items) - keep]
    return forgotten


_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Simulator(Generic[MessageT]):
    """One simulated provider: what it accepted, its outage window and its hooks."""

    name: str
    created: list[MessageT] = field(default_factory=list)
    #: The messages it keeps (the oldest are forgotten beyond, a tenth at a time): a
    #: sandbox left running for weeks must not grow without end. A forgotten message is
    #: unknown to a fetch, as a deleted one is to the real API (404).
    keep: int = 100_000
    outage: Outage | None = None
    # Awaited (after the response is sent) with each accepted message, for extensions.
    # Status callbacks are not hooks: the routes schedule them before answering (see
    # gateway.sandbox.callbacks), so drain_callbacks() after a create always sees them, and
    # the unit tests' per-test reset of the simulators cannot drop them.
    on_created: list[Callable[[MessageT], Awaitable[None]]] = field(default_factory=list)
    _by_id: dict[str, MessageT] = field(default_factory=dict, init=False, repr=False)

    def store(self, message: MessageT) -> None:
        self.created.append(message)
        self._by_id[message.id] = message
        for old in keep_latest(self.created, self.keep):
            del self._by_id[old.id]

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

    def after_create(self, message: MessageT) -> BackgroundTask | None:
        """The ``on_created`` hooks as a create's background task, run after the answer;
        none (the usual case) is no task, so that the framework has nothing to schedule
        and await after each create."""
        return BackgroundTask(self.notify_created, message) if self.on_created else None

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


class HangGate:
    """Holds the 9004 requests open until ``release_all`` or their time limit.

    Waiters are created per call, inside the loop that waits, so one gate serves apps run
    by any loop or thread (uvicorn, the test clients' portal threads, the test's own loop).
    """

    def __init__(self) -> None:
        self._held: set[Waiter] = set()
        self._watchers: set[Waiter] = set()

    @property
    def holding(self) -> int:
        """How many requests are being held right now."""
        return len(self._held)

    async def hold(self, seconds: float) -> None:
        release = Waiter()
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
            watcher = Waiter()
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
    # --- callbacks to the gateway (gateway.sandbox.callbacks, .inbound) ---
    # The gateway's webhook route (POST /webhooks/sms): where status callbacks go when the
    # message names no URL of its own, and where simulated inbound messages are delivered.
    inbound_url: str | None = None
    # The client callbacks go through; the app sets it in its lifespan. None: no callbacks.
    http_client: httpx.AsyncClient | None = None
    # Real seconds between a message's "sent" callback and its final one (0: at once);
    # a second or two makes a demo look like a real carrier.
    callback_delay_seconds: float = 0.0
    # Pause before the first retry of a failed callback, doubled for each later one.
    callback_retry_backoff_seconds: float = 0.5
    # At most this many callback requests in flight at once (0: no limit), as a real
    # provider throttles its calls to one receiver. Without it a burst of thousands of
    # callbacks queues inside httpx's connection pool, whose bookkeeping grows with the
    # queue (the simulator then spent its CPU there, and queued callbacks ran out of their
    # timeout waiting for a connection and were lost).
    callback_concurrency: int = 0
    # Every request made to the gateway, in order (for tests and demos); the latest
    # ``keep_callback_attempts`` of them (the oldest forgotten a tenth at a time).
    callback_attempts: list[CallbackAttempt] = field(default_factory=list)
    keep_callback_attempts: int = 100_000
    callbacks: CallbackTasks = field(default_factory=CallbackTasks)
    _callback_slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def callback_slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around one callback request (see ``callback_concurrency``)."""
        if self.callback_concurrency <= 0:
            return contextlib.nullcontext()
        if self._callback_slots is None:
            self._callback_slots = asyncio.Semaphore(self.callback_concurrency)
        return self._callback_slots

    def now(self) -> float:
        return self.clock()

    def record_callback_attempt(self, attempt: CallbackAttempt) -> None:
        self.callback_attempts.append(attempt)
        keep_latest(self.callback_attempts, self.keep_callback_attempts)

    async def drain_callbacks(self) -> None:
        """Return once every callback scheduled so far, and any it led to, is delivered or
        given up: the synchronisation point for tests (no sleeping)."""
        await self.callbacks.drain()
