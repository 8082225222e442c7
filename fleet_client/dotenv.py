"""A small `.env` reader: `KEY=value` lines, so a portal keeps its fleet settings in one file.

Supported: blank lines and `#` comments, an optional `export ` prefix, unquoted values (a
` #` starts a trailing comment), 'single-quoted' literal values, and "double-quoted" values with
`\\n`, `\\t`, `\\"` and `\\\\` escapes. No variable expansion and no multi-line values: the file
holds settings, not a shell script. A malformed line is an error naming its line number.
"""

from __future__ import annotations

import re
from pathlib import Path

from fleet_client.errors import ConfigurationError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


def _double_quoted(raw: str, where: str) -> tuple[str, str]:
    out: list[str] = []
    i = 1
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if char == '"':
            return "".join(out), raw[i + 1 :]
        out.append(char)
        i += 1
    raise ConfigurationError(f"{where}: unterminated double quote")


def _value(raw: str, where: str) -> str:
    raw = raw.strip()
    if raw.startswith('"'):
        value, rest = _double_quoted(raw, where)
    elif raw.startswith("'"):
        end = raw.find("'", 1)
        if end < 0:
            raise ConfigurationError(f"{where}: unterminated single quote")
        value, rest = raw[1:end], raw[end + 1 :]
    else:
        return re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise ConfigurationError(f"{where}: unexpected text after the closing quote")
    return value


def parse_dotenv(text: str, origin: str = ".env") -> dict[str, str]:
    """The `KEY=value` pairs of a `.env` text; later lines win."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{origin}:{number}"
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ConfigurationError(f"{where}: expected KEY=value")
        values[key] = _value(raw, where)
    return values


def read_dotenv(path: Path) -> dict[str, str]:
    """The pairs of the file at `path`; an absent file is an empty one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_dotenv(text, str(path))
