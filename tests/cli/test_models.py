"""`modelbuilder models register/list/show/alias/download`, and `predict` naming a registered model."""

from __future__ import annotations

import json
from pathlib import Path

from modelbuilder.core.services import Services
from tests.completed import make_completed_run


def _two_runs(trained) -> tuple[str, str]:
    with Services() as services:
        return make_completed_run(services, trained), make_completed_run(services, trained)


def test_register_list_show_alias_download(cli, trained, tmp_path: Path):
    first, second = _two_runs(trained)
    registered = cli("models", "register", first, "--name", "pets")
    assert registered.code == 0, registered.stderr
    assert "as pets:1" in registered.stdout
    again = json.loads(cli("models", "register", second, "--name", "pets", "--alias", "production", "--json").stdout)
    assert (again["version"], again["run_id"], again["aliases"]) == (2, second, ["production"])

    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["aliases"]) for m in listed] == [("pets", {"production": 2})]
    table = cli("models", "list")
    assert "pets" in table.stdout
    assert "production -> 2" in table.stdout
    shown = json.loads(cli("models", "show", "pets", "--json").stdout)
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    assert shown["versions"][1]["run_id"] == first
    assert first in cli("models", "show", "pets").stdout

    moved = cli("models", "alias", "pets:1", "production")
    assert moved.code == 0, moved.stderr
    assert "pets:production is now version 1" in moved.stdout

    done = cli("models", "download", "pets:production", "--output", str(tmp_path / "out"))
    assert done.code == 0, done.stderr
    assert "pets:1" in done.stdout
    assert (tmp_path / "out" / "Tiny.WebApi" / "main.py").is_file()
    assert 'version = "1"' in (tmp_path / "out" / "Tiny.Model" / "pyproject.toml").read_text()

    scored = cli("predict", "pets:production", str(trained.data), "--output", str(tmp_path / "s.csv"))
    assert scored.code == 0, scored.stderr
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 20
    assert cli("models", "alias", "pets", "production", "--remove").code == 0
    cli("predict", "pets:production", str(trained.data)).user_error("has no alias 'production'",
                                                                    "'modelbuilder models show pets'")


def test_mistakes_are_one_line_with_the_fix(cli, trained, tmp_path: Path):
    first, _ = _two_runs(trained)
    cli("models", "register", first, "--name", "x").user_error("2 to 64 characters")
    cli("models", "register", first, "--name", "pets", "--alias", "1st").user_error("alias '1st' is not valid")
    cli("models", "register", "run-000000000000", "--name", "pets").user_error("run-000000000000")
    cli("models", "show", "pets").user_error("no registered model 'pets'", "'modelbuilder models list'")
    cli("models", "register", first, "--name", "pets")
    cli("models", "download", "pets:9", "--output", str(tmp_path / "o")).user_error(
        "has no version 9", "'modelbuilder models show pets'")
    cli("models", "download", "pets:1:2", "--output", str(tmp_path / "o")).user_error("NAME:VERSION")
    cli("models", "alias", "pets:4", "production").user_error("has no version 4")
    assert not (tmp_path / "o").exists()
    cli("predict", "pets:1", str(trained.data), "--workspace", "nowhere").user_error(
        "Workspace 'nowhere' does not exist")
    scored = cli("predict", "pets:1", str(trained.data), "--workspace", "default", "-o", str(tmp_path / "s.jsonl"))
    assert scored.code == 0, scored.stderr
