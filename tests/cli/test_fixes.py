"""How the CLI words an error's fix (cli/fixes.py): every step core can name has a command or an option."""

from __future__ import annotations

from modelbuilder.cli.fixes import COMMANDS, OPTIONS, command, one_line
from modelbuilder.errors import ACTIONS, Conflict, step


def test_every_step_has_the_cli_s_words() -> None:
    assert set(COMMANDS) | set(OPTIONS) == ACTIONS
    assert not set(COMMANDS) & set(OPTIONS)
    every = {"workspace": "team", "compute": "gpu-1", "run": "run-0123456789ab", "model": "pets",
             "data": "pets"}
    for action in ACTIONS:
        worded = command(step(action, **every))
        assert worded, action
        assert "{" not in worded, (action, worded)


def test_a_fix_names_the_command_with_the_workspace_it_acts_in() -> None:
    error = Conflict("Compute 'gpu-1' is in use.", "delete it first ({delete}).",
                     {"delete": step("delete_compute", workspace="team", compute="gpu-1")})
    assert one_line(error) == ("Compute 'gpu-1' is in use. Fix: delete it first "
                               "('modelbuilder compute delete gpu-1 --workspace team').")
    assert str(error) == "Compute 'gpu-1' is in use. Fix: delete it first."  # the SDK's plain words
