"""The ``juhe-sync`` command, run as a user would, on every backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from juhe_sync.records import MessageQuery
from juhe_sync.service.stores import open_store
from tests.conftest import GUID, callback_fixtures, fixture_json
from tests.helpers import snapshot


def run(*args: str, database_url: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": database_url, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "juhe_sync", *args], env=env, capture_output=True, text=True, timeout=300, input=stdin
    )


def jsonl(path: Path, names: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps(fixture_json(n), ensure_ascii=False) + "\n" for n in names), encoding="utf-8"
    )
    return path


def test_migrate_is_idempotent(database_url: str) -> None:
    for _ in range(2):
        out = run("migrate", database_url=database_url)
        assert out.returncode == 0, out.stderr
        assert "schema up to date" in out.stderr


def test_import_then_reimport_then_replay(database_url: str, tmp_path: Path) -> None:
    names = ["callback_11003_user_login.json", *callback_fixtures()]
    file = jsonl(tmp_path / "callbacks.jsonl", names)
    out = run("import", str(file), database_url=database_url)
    assert out.returncode == 0, out.stderr
    assert f"stored {len(callback_fixtures())}, duplicates 1, failed 0, rejected 0" in out.stderr
    assert "import" in out.stderr  # the progress bar's label

    store = open_store(database_url)
    try:
        before = snapshot(store)
        assert before["counts"] == (4, 2, 11)
    finally:
        store.close()

    out = run("import", str(file), "--database-url", database_url, database_url="sqlite:///ignored.db")
    assert f"stored 0, duplicates {len(names)}" in out.stderr

    out = run("replay", database_url=database_url)
    assert out.returncode == 0, out.stderr
    assert f"events {len(callback_fixtures())}, messages added 0, changed 0, failed 0" in out.stderr
    out = run("replay", "--guid", GUID, database_url=database_url)
    assert out.returncode == 0, out.stderr
    assert run("replay", "--guid", "nobody", database_url=database_url).returncode == 2

    store = open_store(database_url)
    try:
        assert snapshot(store) == before
        device = store.device(GUID)
        assert device is not None
        assert store.messages(MessageQuery(device.id, keyword="报价单")).total == 1
    finally:
        store.close()


def test_import_reports_bad_lines_and_keeps_going(database_url: str, tmp_path: Path) -> None:
    file = tmp_path / "mixed.jsonl"
    good = json.dumps(fixture_json("callback_11010_text_room.json"), ensure_ascii=False)
    file.write_text(f"{good}\nnot json\n\n{{\"guid\": \"g\"}}\n", encoding="utf-8")
    out = run("import", str(file), database_url=database_url)
    assert out.returncode == 1
    assert "line 2: rejected" in out.stderr and "line 4: rejected" in out.stderr
    assert "stored 1, duplicates 0, failed 0, rejected 2" in out.stderr


def test_import_from_stdin(database_url: str) -> None:
    line = json.dumps(fixture_json("callback_11010_text_room.json"), ensure_ascii=False)
    out = run("import", "-", database_url=database_url, stdin=line + "\n")
    assert out.returncode == 0, out.stderr
    assert "stored 1" in out.stderr


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    out = run("migrate", database_url="mysql://nope")
    assert out.returncode == 2 and "cannot open" in out.stderr and "Traceback" not in out.stderr


def test_copy_command(database_url: str, tmp_path: Path) -> None:
    file = jsonl(tmp_path / "callbacks.jsonl", callback_fixtures())
    assert run("import", str(file), database_url=database_url).returncode == 0
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    out = run("copy", "--from", database_url, "--to", target, database_url="sqlite:///unused.db")
    assert out.returncode == 0, out.stderr
    assert "copy" in out.stderr and "messages 11" in out.stderr
    a, b = open_store(database_url), open_store(target)
    try:
        assert snapshot(a) == snapshot(b)
    finally:
        a.close()
        b.close()
    again = run("copy", "--from", database_url, "--to", target, database_url="sqlite:///unused.db")
    assert again.returncode == 0 and "messages 0" in again.stderr
