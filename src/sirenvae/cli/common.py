"""What every command shares: the typer app, the consoles, error handling and option parsing.

Every bad input ends with one line ``error: ...`` on standard error and exit code 2; a training run
that stops on a non-finite loss exits with code 1 and keeps its last good checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import typer
from rich.console import Console

__all__ = [
    "UsageError",
    "app",
    "check_output",
    "console",
    "err_console",
    "one_of",
    "parse_latent",
    "split_list",
    "user_errors",
]

app = typer.Typer(
    name="sirenvae",
    help="Deep generative models that follow a known Bayesian network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress.")) -> None:
    """Deep generative models that follow a known Bayesian network."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


class UsageError(ValueError):
    """A combination of options that cannot work."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns the library's input errors into one line and exit code 2."""
    from sirenvae.flows import ConvergenceError
    from sirenvae.training import TrainingError

    try:
        yield
    except TrainingError as e:
        err_console.print(f"error: training stopped: {e}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except (ValueError, ConvergenceError, FileNotFoundError, PermissionError) as e:
        message = " ".join(str(e).split())
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def one_of(names: Sequence[str]) -> str:
    """``"a, b or c"`` for help texts and messages."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def parse_latent(latent: str | None) -> str | None:
    """``--latent``: a rule name or comma-separated node names, passed on as given
    (:func:`sirenvae.data.latent_split` parses it and trims the names).
    """
    return latent


def split_list(value: str | None) -> tuple[str, ...] | None:
    """A comma-separated option as a tuple of its non-empty items (``None`` when not given)."""
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


def check_output(path: Path) -> None:
    """Refuses an output file whose directory does not exist (before any work is done)."""
    if not path.parent.exists():
        raise UsageError(f"cannot write {path}: directory {path.parent} does not exist")
