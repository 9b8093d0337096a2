"""The command line: every option documented in the README, one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ingest.cli import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group = cli, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found.extend(commands(command, f"{prefix}{name} "))
    return found


def all_options() -> list[tuple[str, click.Option]]:
    found = [(p.opts[0], p) for p in cli.params if isinstance(p, click.Option)]
    for name, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                found.append((f"{name} {param.opts[0]}", param))
    return found


@pytest.mark.parametrize(
    "where,option", all_options(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_option_and_env_var_is_in_the_readme(where: str, option: click.Option) -> None:
    assert f"`{option.opts[0]}" in README, f"{where} is not documented in README.md"
    if option.envvar:
        assert f"`{option.envvar}`" in README, f"{where}'s env var {option.envvar} is undocumented"


def test_every_command_is_in_the_readme() -> None:
    for name, _command in commands():
        assert f"`tiretrack {name}" in README, f"tiretrack {name} is not documented"


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["export", "nope", "--out", "x.csv"], "is not one of"),
        (
            ["export", "shipments", "--out", "x.csv", "--as-of", "2026-03-02T08:00:00"],
            "no UTC offset",
        ),
        (["export", "shipments", "--out", "x.csv", "--as-of", "soon"], "RFC 3339"),
        (["ingest", "--batch-size", "0"], "--batch-size"),
        (["simulate", "--rate", "-1"], "--rate"),
        (["ingest", "--kafka-config", "/nonexistent/client.properties"], "does not exist"),
    ],
)
def test_bad_arguments_say_what_to_do(args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert fragment in result.output + str(result.exception)
