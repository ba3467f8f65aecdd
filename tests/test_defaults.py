"""Every setting's default is stated once: the handler's signature, ``Settings`` and the README agree.

The README's settings table is the user's reference; ``help(CloudWatchLogsHandler)``
and IDE hovers read the signature and its docstring.  A default changed in one
place and not the others fails here.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Dict

from cwlhandler import CloudWatchLogsHandler
from cwlhandler.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
SIGNATURE = {name: p.default for name, p in inspect.signature(CloudWatchLogsHandler.__init__).parameters.items()
             if name != "self"}
NOT_IN_TABLE = {"level"}  # logging.Handler's own argument


def readme_defaults() -> Dict[str, str]:
    """Keyword -> its default as the README's settings table writes it (one row may name several keywords)."""
    table = README.split("## Settings", 1)[1].split("\n\n", 2)[1]
    rows: Dict[str, str] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`(\w+)`", cells[0])
        values = re.findall(r"`([^`]*)`", cells[1]) or [cells[1]]
        for i, name in enumerate(names):
            # one default per name, or one for all (and maybe a remark in code font after it)
            rows[name] = values[i] if len(values) == len(names) else values[0]
    return rows


def as_readme(value: object) -> str:
    if value is inspect.Parameter.empty:
        return "(required)"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int) and not isinstance(value, bool) and value > 2**20 and value % 2**20 == 0:
        return f"{value // 2**20} MiB"
    return repr(value)


def test_the_signature_and_settings_agree():
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert fields, "Settings has no fields"
    for name, default in fields.items():
        assert name in SIGNATURE, f"Settings.{name} is not a keyword of the handler"
        assert SIGNATURE[name] == default, f"{name}: handler default {SIGNATURE[name]!r}, Settings {default!r}"


def test_the_readme_table_lists_every_keyword_with_its_default():
    rows = readme_defaults()
    keywords = set(SIGNATURE) - NOT_IN_TABLE
    assert set(rows) == keywords, f"README only: {set(rows) - keywords}; handler only: {keywords - set(rows)}"
    for name in keywords:
        assert rows[name] == as_readme(SIGNATURE[name]), (name, rows[name], SIGNATURE[name])


def test_the_docstring_documents_every_keyword():
    doc = inspect.getdoc(CloudWatchLogsHandler) or ""
    missing = [name for name in SIGNATURE if not re.search(rf"^\s*{name}\b", doc, re.M)]
    assert not missing, f"not documented in CloudWatchLogsHandler's docstring: {missing}"
