"""bench/instructions.py drives the real app in-process: each path's requests must be
answered as the gateway answers them (202 a send, 200 a report) and each report applied,
or its instruction counts would measure error answers (it exits non-zero then)."""

from __future__ import annotations

import os

import pytest
from nacl.signing import SigningKey

from bench import instructions
from gateway.sandbox import SandboxCredentials, callbacks, signing


def test_every_path_answers_and_applies_its_requests(capsys: pytest.CaptureFixture[str]) -> None:
    environ = dict(os.environ)
    assert instructions.main(["--no-valgrind", "-n", "30", "--warmup", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "accept: 30 measured requests answered {202: 30}",
        "twilio: 30 measured requests answered {200: 30}",
        "telnyx: 30 measured requests answered {200: 30}",
    ]
    assert dict(os.environ) == environ  # the settings came from a copy


def test_an_unknown_path_is_refused() -> None:
    with pytest.raises(SystemExit):
        instructions.main(["--no-valgrind", "deliver"])


def test_the_sandbox_paths_send_fetch_and_verify_every_callback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--no-valgrind", "-n", "30", "--warmup", "10", "sandbox-twilio", "sandbox-telnyx"]
    assert instructions.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "sandbox-twilio: 30 measured messages sent, fetched and delivered; 60 callbacks verified",
        "sandbox-telnyx: 30 measured messages sent, fetched and delivered; 60 callbacks verified",
    ]


@pytest.mark.parametrize("path", ["sandbox-twilio", "sandbox-telnyx"])
def test_a_callback_signed_wrong_fails_the_sandbox_path(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A simulator change that broke the signatures must not yield an instruction count.
    other = SandboxCredentials.from_seed("not the bench's seed")

    def twilio_form(
        url: str, params: dict[str, str], auth_token: str
    ) -> tuple[bytes, dict[str, str]]:
        return signing.twilio_form(url, params, other.twilio_auth_token)

    def telnyx_headers(body: bytes, signing_key: SigningKey, timestamp: float) -> dict[str, str]:
        return signing.telnyx_headers(body, other.telnyx_signing_key, timestamp)

    monkeypatch.setattr(callbacks, "twilio_form", twilio_form)
    monkeypatch.setattr(callbacks, "telnyx_headers", telnyx_headers)
    with pytest.raises(SystemExit, match="not signed right"):
        instructions.main(["--no-valgrind", "-n", "5", "--warmup", "0", path])
