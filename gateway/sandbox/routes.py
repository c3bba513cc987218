"""Assemble the sandbox's Litestar router from the per-provider modules."""

from litestar import Router
from litestar.di import Provide

from gateway.sandbox import control, inbound, telnyx_api, twilio_api
from gateway.sandbox.state import SandboxState, Simulator, TelnyxMessage, TwilioMessage


def create_sandbox_router(state: SandboxState) -> Router:
    """The simulated Twilio and Telnyx APIs, their control endpoints and their inbound-message
    triggers, under ``/sandbox``.

    Every handler carries ``opt["exclude_from_auth"] = True`` (the key Litestar's
    authentication middleware honours by default): the simulators check the *providers'*
    credentials, never the gateway's API keys. Handlers appear in the OpenAPI schema under the
    ``sandbox`` tag, marked as needing no gateway credentials (``security: [{}]``).
    """

    # Closures rather than values: Litestar deep-copies routers on registration, and the
    # routes must share the caller's state object, not a copy of it.
    def provide_state() -> SandboxState:
        return state

    def provide_twilio() -> Simulator[TwilioMessage]:
        return state.twilio

    def provide_telnyx() -> Simulator[TelnyxMessage]:
        return state.telnyx

    twilio = Router(
        "/twilio",
        route_handlers=[*twilio_api.handlers, *control.handlers, inbound.twilio_inbound],
        dependencies={"simulator": Provide(provide_twilio, sync_to_thread=False)},
    )
    telnyx = Router(
        "/telnyx",
        route_handlers=[*telnyx_api.handlers, *control.handlers, inbound.telnyx_inbound],
        dependencies={"simulator": Provide(provide_telnyx, sync_to_thread=False)},
    )
    return Router(
        "/sandbox",
        route_handlers=[twilio, telnyx],
        dependencies={"sandbox_state": Provide(provide_state, sync_to_thread=False)},
        opt={"exclude_from_auth": True},
        # An empty requirement overrides an app-wide one in the OpenAPI document: no API key.
        security=[{}],
        tags=["sandbox"],
    )
