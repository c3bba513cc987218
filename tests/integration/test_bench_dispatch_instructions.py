"""bench/dispatch_instructions.py sends stored messages with a worker built as
gateway/worker.py builds it: every message must be sent exactly once through the path's
provider, or its instruction counts would measure something else (it exits non-zero)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from bench import dispatch_instructions


def test_every_message_is_sent_once(capsys: pytest.CaptureFixture[str]) -> None:
    environ = dict(os.environ)
    handlers = logging.getLogger().handlers[:]
    assert (
        dispatch_instructions.main(
            ["--no-valgrind", "-n", "40", "--warmup", "10", "dispatch", "dispatch-telnyx"]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        "dispatch: 40 measured messages sent, every message exactly once",
        "dispatch-telnyx: 40 measured messages sent, every message exactly once",
    ]
    assert dict(os.environ) == environ
    assert logging.getLogger().handlers == handlers  # the worker's logging was undone


def test_a_message_sent_twice_fails_the_check(tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "gateway.db"
    with sqlite3.connect(database) as connection:
        connection.executescript(
            "CREATE TABLE messages (message_id, status, attempt_count, provider_kind,"
            " provider_message_id);"
            "CREATE TABLE message_attempts (message_id, outcome, provider_message_id);"
            "INSERT INTO messages VALUES ('a', 'queued', 1, 'twilio', 'SM1'),"
            " ('b', 'queued', 2, 'twilio', 'SM3');"
            "INSERT INTO message_attempts VALUES ('a', 'sent', 'SM1'), ('b', 'sent', 'SM2'),"
            " ('b', 'sent', 'SM3');"
        )
    with pytest.raises(SystemExit, match="1 messages without exactly one sent attempt"):
        dispatch_instructions.check_sent_once(database, "dispatch", 2)
    with pytest.raises(SystemExit):  # and through the other provider, none is right
        dispatch_instructions.check_sent_once(database, "dispatch-telnyx", 2)


def test_an_unknown_path_is_refused() -> None:
    with pytest.raises(SystemExit):
        dispatch_instructions.main(["--no-valgrind", "accept"])
