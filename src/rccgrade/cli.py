"""The ``rccgrade`` command line: a thin shell over the library.

Each stage keeps its command in ``rccgrade/<stage>/cli.py``; this module registers them, sets up
logging and turns :class:`~rccgrade.errors.RccgradeError` into a clear message and exit code 2.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from rccgrade import __version__
from rccgrade.errors import RccgradeError

app = typer.Typer(
    name="rccgrade",
    help="Predict ccRCC WHO/ISUP grade (low 1–2 vs high 3–4) from triple-phase CT, masks and clinical data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rccgrade {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """rccgrade: the whole ccRCC grading study, from manifest to report, in one tool."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for commands: an RccgradeError becomes a red message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RccgradeError as exc:
            # the message starts with "[patient …, file …]": escape it, or Rich swallows it as markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper


# (module, function, command name): each stage's command lives beside its code.
_COMMANDS: list[tuple[str, str, str]] = [
    ("rccgrade.cohort.cli", "validate_command", "validate"),
    ("rccgrade.cohort.index_cli", "index_command", "index"),
    ("rccgrade.cohort.index_cli", "lesions_command", "lesions"),
    ("rccgrade.cohort.index_cli", "import_kits_command", "import-kits"),
    ("rccgrade.cohort.index_cli", "import_nnunet_command", "import-nnunet"),
    ("rccgrade.synth.cli", "synth_command", "synth"),
    ("rccgrade.preprocess.cli", "preprocess_command", "preprocess"),
    ("rccgrade.radiomics.cli", "radiomics_command", "radiomics"),
    ("rccgrade.deep.cli", "deep_command", "deep"),
    ("rccgrade.models.cli", "predict_command", "predict"),
    ("rccgrade.models.explain_cli", "explain_command", "explain"),
    ("rccgrade.study.cli", "study_command", "study"),
    ("rccgrade.study.cli", "demo_command", "demo"),
    ("rccgrade.study.cli", "evaluate_command", "evaluate"),
]

for _module, _func, _name in _COMMANDS:
    # every command module exists: a missing (renamed) one fails here, loudly, instead of vanishing from the CLI
    _mod = importlib.import_module(_module)
    app.command(_name)(user_errors(getattr(_mod, _func)))


if __name__ == "__main__":  # pragma: no cover
    app()
