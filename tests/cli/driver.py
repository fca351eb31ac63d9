"""What a `modelbuilder` command did, and the checks every test makes on it."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def user_error(self, *fragments: str) -> str:
        """Check a user's mistake was rendered as it must be: exit code 2, one line on stderr naming every
        fragment, no traceback. Returns that line."""
        assert self.code == 2, self
        assert len(self.error_lines) == 1, self.stderr
        assert "Traceback" not in self.stderr
        line = self.error_lines[0]
        assert line.startswith("error: "), line
        for fragment in fragments:
            assert fragment in line, (fragment, line)
        return line

    def ok(self) -> Result:
        assert self.code == 0, self
        return self

    def rows(self) -> list[list[str]]:
        """The cells of the body rows of the Rich tables printed on stdout."""
        return [[cell.strip() for cell in line.strip().strip("│").split("│")]
                for line in self.stdout.splitlines() if line.lstrip().startswith("│")]

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.stdout)


Cli = Callable[..., Result]


def in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """cli('workspace', 'list', '--json') -> Result, run through `modelbuilder.cli.main()` in this process."""
    from modelbuilder.cli import main
    from modelbuilder.cli.console import console, err_console

    monkeypatch.setattr(console, "width", 250)  # tables keep whole names on one line
    monkeypatch.setattr(err_console, "width", 250)

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["modelbuilder", *args])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, ANSI.sub("", captured.out), ANSI.sub("", captured.err))

    return invoke
