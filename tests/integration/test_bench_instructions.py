"""bench/instructions.py drives the real app in-process: each path's requests must be
answered as the gateway answers them (202 a send, 200 a report) and each report applied,
or its instruction counts would measure error answers (it exits non-zero then)."""

from __future__ import annotations

import os

import pytest

from bench import instructions


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
