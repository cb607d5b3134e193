"""The ``misgen`` command line (typer + rich).

Commands live in :mod:`misgen.commands`, one module each with a ``register(app)`` function, so a new
command is a new file. Every user error is one line on stderr with exit code 2, whether it is a
:class:`~misgen.errors.MisgenError` or a usage error of click (typer's bundled copy or the
standalone package: typo'd or missing options, bad types, unknown commands). Ctrl-C exits 130 after
the command has saved what it can.

When stdout is not a terminal (a pipe, a file, CI), tables are laid out without a width limit so
that no name is cut ("maze-ch…"); ``--json`` gives machine-readable output where it matters.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

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
UNLIMITED_WIDTH = 100_000  # rich lays tables out to the console width; a pipe has none


def _register_commands() -> None:
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"misgen.commands.{module.name}").register(app)


_register_commands()


def _click_classes(name: str) -> tuple[type, ...]:
    """``name`` from every click that may raise it: typer's bundled copy and the standalone one."""
    found = []
    for module in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


def usage_line(err: Exception) -> str:
    """One line for a click usage error: where, what, and the valid choices when click knows them."""
    ctx = getattr(err, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    message = " ".join(str(err.format_message()).split())  # type: ignore[attr-defined]
    name = type(err).__name__
    if name == "NoSuchOption" and ctx is not None:
        options = sorted(
            {o for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("--")} | {"--help"}
        )
        close = list(getattr(err, "possibilities", None) or [])
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        message = (
            f"no such option {getattr(err, 'option_name', '')!s}{hint}; valid options: {', '.join(options)}"
        )
    elif message.startswith("No such command") and ctx is not None and hasattr(ctx.command, "list_commands"):
        message = f"{message} Valid commands: {', '.join(ctx.command.list_commands(ctx))}"
    return f"{where}{message}"


def _fit_pipes(*consoles: Console) -> None:
    """No width limit where the output is not a terminal, so piped tables keep full names."""
    for console in consoles:
        if not console.is_terminal:
            console.width = UNLIMITED_WIDTH


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: run the app; user and usage errors become one line and exit code 2."""
    from misgen.progress import console

    _fit_pipes(console, err_console)
    try:
        code: Any = app(
            args=list(argv) if argv is not None else None, prog_name="misgen", standalone_mode=False
        )
    except MisgenError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as err:
        if isinstance(err, _click_classes("NoArgsIsHelpError")):  # bare `misgen` or a bare group
            print(err.ctx.get_help())  # type: ignore[attr-defined]
            sys.exit(0)
        if isinstance(err, _click_classes("ClickException")):
            err_console.print(
                "error: " + usage_line(err), highlight=False, soft_wrap=True, markup=False, style="bold red"
            )
            sys.exit(2)
        if isinstance(err, _click_classes("Abort")):
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)
        raise
    # In non-standalone mode typer returns the exit code of typer.Exit (and turns Ctrl-C into 130).
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        if code == 130:
            err_console.print("[yellow]interrupted[/]")
        sys.exit(code)


if __name__ == "__main__":
    main()
