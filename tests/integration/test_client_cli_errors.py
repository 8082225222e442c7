"""`fleet-push` as a new user meets it: every mistake is one line saying which, before anything is
dialled; each cause of a failed tick is said once; `--json` answers in JSON, errors included."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fleet_client.cli import Runtime, main
from fleet_client.demo import create_demo_portal
from fleet_client.state import PushState
from fleet_server.domain.tokens import TokenKind, mint
from tests.support.client_sync import Counting, CountingInterceptor
from tests.support.inprocess import InProcessServer
from tests.support.process import free_port


@pytest.fixture
def demo(tmp_path: Path) -> Any:
    return create_demo_portal(tmp_path / "demo.db", days=1)


def _env(target: str, token: str, source_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "FLEET_INGEST_ENABLED": "true",
        "FLEET_SERVER": target,
        "FLEET_TOKEN": token,
        "FLEET_SOURCE_URL": source_url,
        "FLEET_STATE_URL": f"sqlite:///{tmp_path / 'state' / 'push.db'}",
        **extra,
    }


def _run(argv: list[str], env: dict[str, str], tmp_path: Path, **runtime: Any) -> tuple[int, str]:
    out = io.StringIO()
    empty = tmp_path / "empty.env"
    empty.touch()
    code = main(["--env-file", str(empty), *argv], Runtime(env=env, out=out, **runtime))
    return code, out.getvalue()


def _fleet_push_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("fleet-push: ")]


def test_the_docs_placeholder_token_is_one_line_and_dials_nothing(
    demo: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counting = Counting(CountingInterceptor())
    env = _env("127.0.0.1:1", "fleet_…", demo.url, tmp_path)
    code, out = _run(["once"], env, tmp_path, channel_factory=counting)
    err = capsys.readouterr().err
    assert code == 2
    assert out == ""
    assert err == (
        "fleet-push: FLEET_TOKEN holds characters a token never has (U+2026): a placeholder or a damaged "
        "copy; paste the whole token `fleetctl customers create` (or `rotate-token`) printed\n"
    )
    assert counting.channels == 0


def test_an_unreachable_server_is_one_line_naming_the_address_and_the_setting(
    demo: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    env = _env(f"127.0.0.1:{port}", mint(TokenKind.CUSTOMER), demo.url, tmp_path)
    code, out = _run(["once"], env, tmp_path)
    err = capsys.readouterr().err
    assert code == 1
    assert _fleet_push_lines(err) == [
        f"fleet-push: sites, municipalities, measurements: cannot reach fleet-server at 127.0.0.1:{port} "
        "(Connection refused): is it running there? FLEET_SERVER sets the address"
    ]
    assert err.count("Connection refused") == 1  # no per-resource log lines repeating it
    assert "Connection refused" not in out
    assert out.splitlines()[0].split() == ["sites", "failed"]


def test_a_missing_sqlite_portal_is_one_line_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "portal.sqlite"
    env = _env("127.0.0.1:1", mint(TokenKind.CUSTOMER), f"sqlite:///{missing}", tmp_path)
    code, _ = _run(["once"], env, tmp_path)
    assert code == 2
    assert capsys.readouterr().err == (
        f"fleet-push: FLEET_SOURCE_URL sqlite:///{missing}: no such file {missing} "
        "(`fleet-push demo-portal PATH` writes a sample portal)\n"
    )
    assert not missing.exists()


def test_a_database_without_the_portal_tables_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.sqlite"
    PushState.open(f"sqlite:///{other}").close()  # a SQLite file, but not a portal
    env = _env("127.0.0.1:1", mint(TokenKind.CUSTOMER), f"sqlite:///{other}", tmp_path)
    code, _ = _run(["once"], env, tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "is not a portal database: no table municipalities, sites, devices, tariffs" in err
    assert "SELECT" not in err


@pytest.mark.parametrize("switch", ["ture", "maybe", "enabled"])
def test_a_misspelt_switch_is_refused_not_taken_for_off(
    switch: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(["once"], {"FLEET_INGEST_ENABLED": switch}, tmp_path)
    assert code == 2
    assert out == ""
    assert capsys.readouterr().err == (
        f"fleet-push: FLEET_INGEST_ENABLED: '{switch}' is not true/false "
        "(true, yes, on, 1 or false, no, off, 0)\n"
    )


def test_a_named_env_file_must_exist_and_may_follow_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.env"
    for argv in (["--env-file", str(missing), "status"], ["status", "--env-file", str(missing)]):
        assert main(argv, Runtime(env={}, out=io.StringIO())) == 2
        assert capsys.readouterr().err == f"fleet-push: --env-file {missing}: no such file\n"
    portal_env = tmp_path / "portal.env"
    portal_env.write_text(f"FLEET_SERVER=10.0.0.9:50051\nFLEET_STATE_URL=sqlite:///{tmp_path / 's.db'}\n")
    out = io.StringIO()
    assert main(["status", "--env-file", str(portal_env), "--json"], Runtime(env={}, out=out)) == 0
    assert json.loads(out.getvalue())["server"] == "10.0.0.9:50051"


def test_an_impossible_demo_start_day_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo-portal", str(tmp_path / "p.db"), "--start", "2025-02-30"], Runtime(out=io.StringIO()))
    assert exited.value.code == 2
    assert (
        "argument --start: '2025-02-30' is not a day: use YYYY-MM-DD (day is out of range for month)"
        in capsys.readouterr().err
    )


def test_json_mode_answers_errors_in_json_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(["once", "--json"], {"FLEET_INGEST_ENABLED": "true"}, tmp_path)
    assert code == 2
    assert json.loads(out) == {
        "error": {
            "message": "fleet sync is enabled but FLEET_TOKEN, FLEET_SOURCE_URL is not set",
            "kind": "settings",
        }
    }
    # Captured (not a terminal): the reason is said on stderr too, so `$(…)` does not swallow it.
    assert capsys.readouterr().err == (
        "fleet-push: fleet sync is enabled but FLEET_TOKEN, FLEET_SOURCE_URL is not set\n"
    )


def test_once_json_reports_each_resource(
    server: InProcessServer, new_customer, demo: Any, tmp_path: Path
) -> None:
    customer = new_customer("ONCEJSON")
    code, out = _run(["once", "--json"], _env(server.target, customer.token, demo.url, tmp_path), tmp_path)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["ok"] is True
    assert [(r["resource"], r["outcome"]) for r in doc["resources"]] == [
        ("sites", "pushed"),
        ("devices", "pushed"),
        ("municipalities", "pushed"),
        ("tariffs", "pushed"),
        ("measurements", "pushed"),
    ]
    assert doc["resources"][4]["accepted"] == 576
    assert doc["errors"] == []


def test_status_exits_1_while_a_refused_token_stops_pushing(
    server: InProcessServer, demo: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(server.target, mint(TokenKind.CUSTOMER), demo.url, tmp_path)  # well-formed, unknown
    code, _ = _run(["once"], env, tmp_path)
    assert code == 1
    assert "the server refused token sha256:" not in capsys.readouterr().out
    code, table = _run(["status"], env, tmp_path)
    assert code == 1
    assert "STOPPED: the server refused token" in table
    code, raw = _run(["status", "--json"], env, tmp_path)
    assert code == 1
    assert json.loads(raw)["token_refused"]["fingerprint"].startswith("sha256:")


def test_fixing_the_server_setting_drops_the_earlier_back_off(
    server: InProcessServer,
    new_customer,
    demo: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer = new_customer("RETARGET")
    wrong = _env(f"127.0.0.1:{free_port()}", customer.token, demo.url, tmp_path)
    assert _run(["once"], wrong, tmp_path)[0] == 1
    state = PushState.open(wrong["FLEET_STATE_URL"])
    assert state.load("sites").next_attempt is not None  # backing off after the failure
    state.close()
    caplog.set_level(logging.INFO)
    right = {**wrong, "FLEET_SERVER": server.target}
    code, out = _run(["once"], right, tmp_path)
    assert code == 0, out  # no waiting out the back-off earned against the wrong address
    assert "measurements    pushed (576 rows" in out
    assert "FLEET_SERVER or FLEET_TOKEN changed: earlier back-off dropped" in caplog.text
    state = PushState.open(wrong["FLEET_STATE_URL"])
    assert all(r.failures == 0 and r.next_attempt is None for r in state.load_all())
    state.close()
