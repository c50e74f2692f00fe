"""``make demo``'s scheduler and reminders step (examples/demo.py), on both backends: the
jobs it schedules fire and it prints what the bot would have sent."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import MakeDB

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("botdb_example_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_demo_reminders_step_fires_all_three(
    make_db: MakeDB, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = load_demo()
    db = await make_db(create_tables=True)
    await demo.reminders(db)
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "schedule(key='digest:1') twice -> job ids [1, 1]" in out
    assert "a naive datetime -> SchedulingError" in out
    assert "-> #chat-0: Saturday match, please react: <@8> <@9>" in out
    assert "-> job demo.digest {'guild': 'Python Hub'}" in out
    assert "-> #chat-0: <@7> stand up and stretch" in out
    assert "reminder_logs: sent to 2 users" in out
    assert "list_for(7) -> ['weekly sync'] (the one-shot was sent)" in out
    assert "worker: 3 jobs run" in out
    assert not db.scheduler.running
    assert await db.reminders.list_for(7) == []  # the weekly one was cancelled
