"""The command line's contract: exit codes (0 done, 1 unhealthy, 2 error) and errors that are one
line on stderr, through ``main`` as the ``sleepd`` program runs it, against a real home in tmp_path;
and every option with an environment fallback names it in ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sleepd.cli import cli, main
from sleepd.ledger import Ledger
from tests.helpers import free_port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home, no config file, and an API port where no daemon answers."""
    monkeypatch.setenv("SLEEPD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SLEEPD_CONFIG", "")
    monkeypatch.setenv("SLEEPD_API_PORT", str(free_port()))
    monkeypatch.delenv("SLEEPD_API_URL", raising=False)
    return tmp_path / "home"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``sleepd ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(text: str) -> str:
    assert text.strip() and "\n" not in text.strip(), f"not one line: {text!r}"
    return text.strip()


@pytest.mark.parametrize(("args", "says"), [
    (("nonsense",), "sleepd: error: No such command 'nonsense'"),
    (("query",), "sleepd: error: Missing argument 'Q'"),
    (("query", "x", "--budget", "many"), "sleepd: error: Invalid value for '--budget': 'many' is not a valid integer"),
    (("query", "x", "--bogus"), "sleepd: error: No such option '--bogus'"),
    (("run", "--profile", "poems"), "sleepd: error: Invalid value for '--profile'"),
    (("worker", "--nice", "40"), "sleepd: error: Invalid value for '--nice'"),
    (("purge",), "sleepd: error: give --source or --path (or both)"),
    (("purge", "--source", "s", "--lift"), "sleepd: error: --lift needs the --path glob"),
    (("sources", "add"), "sleepd: error: give a folder PATH, or --sql URL"),
    (("sources", "add", "--sql", "sqlite:///x.db"), "sleepd: error: with --sql give --key"),
    (("diff", "notes.md", "1", "two"), "sleepd: error: Invalid value for 'B'"),
    (("token", "create"), "sleepd: error: Missing argument 'PRINCIPAL'"),
    (("bench", "--out", "x"), "sleepd: error: Missing option '--data'"),
    (("llm", "estimate", "--source"), "sleepd: error: Option '--source' requires an argument"),
])
def test_usage_errors_are_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str],
                                              args: tuple[str, ...], says: str) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert _one_line(err).startswith(says)


def test_a_bad_query_and_a_bad_path_are_one_line_and_exit_2(home: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "query", "", "--json")
    assert code == 2 and "non-empty" in _one_line(err)
    code, _, err = _run(capsys, "query", "x", "--budget", "0")
    assert code == 2 and "out of range" in _one_line(err)
    code, _, err = _run(capsys, "run", str(tmp_path / "missing"))
    assert code == 2 and "not a folder" in _one_line(err)


def test_a_bad_config_is_one_line_naming_the_key_and_exit_2(home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sleepd.toml"
    config.write_text("[sleepd]\nidle_seconds = 'soon'\n")
    monkeypatch.setenv("SLEEPD_CONFIG", str(config))
    for command in (("status",), ("check",), ("sources", "list"), ("token", "list"), ("audit",)):
        code, out, err = _run(capsys, *command)
        line = _one_line(err)
        assert code == 2 and out == "" and "idle_seconds" in line and "soon" in line, (command, line)
    config.write_text("[sleepd\n")
    code, _, err = _run(capsys, "status")
    assert code == 2 and "not valid TOML" in _one_line(err)


def test_without_a_daemon(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``check`` is unhealthy (exit 1); the ledger's commands work from the ledger; a missing item
    or source is one line and exit 2."""
    code, out, err = _run(capsys, "check")
    assert code == 1 and out == "" and _one_line(err) == f"unhealthy: daemon not running (home {home})"
    code, out, _ = _run(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["daemon"] == {"state": "not running", "home": str(home)}
    code, out, _ = _run(capsys, "status")
    assert code == 0 and f"daemon: not running (home {home})" in " ".join(out.split())
    code, out, _ = _run(capsys, "token", "list", "--json")
    assert code == 0 and '"tokens": []' in out
    code, _, err = _run(capsys, "history", "wages.md")
    assert code == 2 and "wages.md" in _one_line(err)
    code, _, err = _run(capsys, "sql-triggers", "shop")
    assert code == 2 and _one_line(err) == "sleepd: error: Invalid value for SOURCE: no sql source named 'shop'"


def test_sources_and_tokens_round_trip(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    code, out, _ = _run(capsys, "sources", "add", str(folder), "--name", "notes")
    assert code == 0 and out.strip() == f"added source notes: {folder.resolve()}"
    code, out, _ = _run(capsys, "sources", "list")
    assert code == 0 and out.startswith("notes\tfiles\t")
    code, out, _ = _run(capsys, "token", "create", "ana", "--group", "legal")
    assert code == 0 and len(out.strip()) > 20
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    try:
        assert [s.name for s in ledger.sources()] == ["notes"]
    finally:
        ledger.close()
    code, out, _ = _run(capsys, "token", "revoke", "ana")
    assert code == 0 and out.startswith("revoked 1 token of ana: ")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_help_names_every_environment_variable() -> None:
    runner = CliRunner()
    shown: set[str] = set()
    for path, command in _commands(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        text = " ".join(result.output.split())
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                assert f"env var: {param.envvar}" in text, (path, param.name)
                shown.add(str(param.envvar))
    assert shown == {"SLEEPD_API_PORT", "SLEEPD_SQL_URL", "SLEEPD_SQL_PASSWORD_ENV", "SLEEPD_BENCH_DATA",
                     "SLEEPD_BENCH_CACHE"}


def test_no_command_prints_the_help_and_exits_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys)
    assert code == 2 and err.startswith("Usage: sleepd [OPTIONS] COMMAND") and "query" in err


def test_purge_dry_run_and_a_glob_that_matches_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "purge", "--path", "secrets/**", "--dry-run")
    assert code == 0 and out.startswith("would purge 0 items") and "nothing removed" in out
    code, out, err = _run(capsys, "purge", "--path", "secrets/**")
    assert code == 2 and "matches 'secrets/**': nothing to purge" in _one_line(err)
    code, out, err = _run(capsys, "purge", "--path", "secrets/**", "--keep-excluded", "--json")
    assert code == 0 and '"items": 0' in out


def test_json_logs_are_one_object_per_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "SLEEPD_LOG_FORMAT" in out
    code, _, err = _run(capsys, "--log-format", "xml", "status")
    assert code == 2 and "Invalid value for '--log-format'" in _one_line(err)
    script = ("import logging\nfrom sleepd.logs import setup_logging\nsetup_logging(False, 'json')\n"
              "log = logging.getLogger('sleepd.worker')\nlog.info('repo:%s: published v%d', 'a.py', 2)\n"
              "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('boom')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["level"], e["logger"], e["message"]) for e in lines] == [
        ("INFO", "sleepd.worker", "repo:a.py: published v2"), ("ERROR", "sleepd.worker", "boom")]
    assert "ZeroDivisionError" in lines[1]["exc"] and lines[0]["at"].endswith("+00:00")


def test_lift_scans_at_once_and_refresh_cannot_wait_without_a_daemon(home: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """With no daemon a lifted glob is scanned by the command itself (the next daemon enriches
    it); refresh says what it queued, and --wait says it cannot wait without a daemon."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nalpha\n")
    (folder / "b.md").write_text("# B\n\nbeta\n")
    assert _run(capsys, "sources", "add", str(folder), "--name", "notes")[0] == 0
    code, out, _ = _run(capsys, "purge", "--path", "a.md", "--keep-excluded", "--json")
    assert code == 0 and json.loads(out)["items"] == 0
    code, out, _ = _run(capsys, "purge", "--path", "a.md", "--lift")
    assert code == 0 and out.strip() == "lifted the purge of a.md: 1 items found and tracked again: notes:a.md"
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    try:
        assert ledger.known_items("notes")["a.md"].state == "pending"
    finally:
        ledger.close()
    code, out, _ = _run(capsys, "refresh", "--path", "*.md", "--json")
    body = json.loads(out)
    assert code == 0 and body["queued"] == 2 and [i["item"] for i in body["items"]] == ["a.md", "b.md"]
    code, out, err = _run(capsys, "refresh", "--path", "a.md", "--wait")
    assert code == 2 and out.strip() == "queued 1 items for refresh: notes:a.md"
    assert f"cannot wait without a daemon: none runs for home {home}" in _one_line(err)
    code, _, err = _run(capsys, "refresh", "--timeout", "5")
    assert code == 2 and "--timeout goes with --wait" in _one_line(err)


def test_the_audit_log_covers_every_admin_action(home: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nalpha\n")
    steps = [("sources", "add", str(folder), "--name", "notes"), ("token", "create", "ana"),
             ("token", "revoke", "ana"), ("purge", "--path", "a.md", "--keep-excluded"),
             ("purge", "--path", "a.md", "--lift"), ("refresh",), ("reindex",), ("purge", "--source", "notes")]
    for step in steps:
        code, _, err = _run(capsys, *step)
        assert code == 0, (step, err)
    code, out, _ = _run(capsys, "audit", "--json")
    entries = json.loads(out)["entries"]
    assert [e["action"] for e in entries] == ["source.add", "token.create", "token.revoke", "purge", "purge.lift",
                                              "refresh", "reindex", "purge", "source.remove"]
    assert entries[0]["actor"] == "cli" and entries[0]["detail"]["where"] == str(folder.resolve())
    assert entries[4]["detail"] == {"source": None, "path": "a.md", "found": 1}
    assert entries[-1]["detail"] == {"source": "notes", "items": 1}
    # adding the same source again changes nothing and audits nothing
    assert _run(capsys, "sources", "add", str(folder), "--name", "notes")[0] == 0
    code, out, _ = _run(capsys, "audit", "--action", "source.add", "--json")
    assert len(json.loads(out)["entries"]) == 2  # removed in between: added again
