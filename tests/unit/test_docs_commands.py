"""The README and docs/ stay runnable: every fleetctl, fleet-push and fleet-server line in their
shell blocks parses with the command's own parser, and the repository cites nothing outside it."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet_client.cli import _parser as fleet_push_parser
from fleet_server.cli import build_parser as fleet_server_parser
from fleet_server.fleetctl.main import build_parser as fleetctl_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "fleetctl": fleetctl_parser,
    "fleet-push": fleet_push_parser,
    "fleet-server": fleet_server_parser,
}
# A command starts a line or follows `$(`, a pipe, `&&` or `;`; leading VAR=value pairs are the
# environment. It ends at what ends a shell command.
_COMMAND = re.compile(
    r"(?:^|\$\(|\||&&|;)\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(fleetctl|fleet-push|fleet-server)\b([^|;&)]*)"
)
_PLACEHOLDER = re.compile(r"<[^>]*>|…")


def _shell_lines(path: Path) -> Iterator[str]:
    """The lines of the ```sh blocks of `path`, continuations joined, comments dropped."""
    block: list[str] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("```"):
            block = [] if raw.strip() in ("```sh", "```bash", "```shell") and block is None else None
            continue
        if block is None:
            continue
        block.append(raw)
        if raw.endswith("\\"):
            continue
        line = " ".join(part.rstrip("\\").strip() for part in block)
        block = []
        yield re.sub(r"(^|\s)#.*$", "", line)


def _commands() -> list[tuple[str, str, str]]:
    found = []
    for path in DOCS:
        for line in _shell_lines(path):
            for name, rest in _COMMAND.findall(line):
                found.append((path.name, name, rest.strip()))
    return found


COMMANDS = _commands()


def test_the_readme_tour_uses_every_cli() -> None:
    in_readme = {name for where, name, _ in COMMANDS if where == "README.md"}
    assert in_readme >= {"fleetctl", "fleet-push"}


@pytest.mark.parametrize(
    ("where", "name", "arguments"), COMMANDS, ids=[f"{w}: {n} {a}" for w, n, a in COMMANDS]
)
def test_each_documented_command_line_parses(where: str, name: str, arguments: str) -> None:
    words = shlex.split(_PLACEHOLDER.sub("X", arguments))
    parser = PARSERS[name]()
    try:
        parser.parse_args(words)
    except SystemExit as exc:
        if exc.code != 0:  # `--help` exits 0
            pytest.fail(f"{where}: `{name} {arguments}` does not parse")


def test_the_tour_points_the_clients_at_the_server_make_run_started() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "export FLEET_SERVER=$(cat .fleet/server)" in readme
    assert "--server" in readme
    assert "FLEET_TOKEN=fleet_…" not in readme  # a placeholder pasted as a token
    # `fleet-push status` reads the settings `once` used: they are exported before either runs.
    assert readme.index("export FLEET_INGEST_ENABLED=true") < readme.index("fleet-push once")
    assert readme.index("export FLEET_TOKEN=$(fleetctl customers create") < readme.index("fleet-push once")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    names = [n for n in listed.stdout.splitlines() if not n.startswith("generated/fleet/")]
    return [ROOT / n for n in names if (ROOT / n).suffix in {".py", ".md", ".proto", ".toml", ".yaml", ""}]


def test_the_repository_cites_no_file_outside_it() -> None:
    """It explains itself: no section numbers of, or paths to, documents it does not contain."""
    offenders = []
    this = Path(__file__).resolve()
    for path in _tracked_text_files():
        if path.resolve() == this or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in ("SPEC.md", "§", "../shared"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []
