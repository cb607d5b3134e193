"""The ``misgen`` command line (typer + rich).

Commands live in :mod:`misgen.commands`, one module each with a ``register(app)`` function, so a new
command is a new file. Every user error (:class:`~misgen.errors.MisgenError`) is printed as one red
line on stderr with exit code 2; Ctrl-C exits 130 after the command has saved what it can.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from rich.console import Console

from misgen import commands
from misgen.errors import MisgenError

app = typer.Typer(
    name="misgen",
    help="Goal misgeneralization and deceptive-alignment tests for RL agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _register_commands() -> None:
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"misgen.commands.{module.name}").register(app)


_register_commands()


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except MisgenError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(2)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
