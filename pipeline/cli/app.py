"""The Typer application that every command module adds itself to."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Neural style transfer for photos and photo collections.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
styles_app = typer.Typer(help="List and inspect style presets.", no_args_is_help=True)
app.add_typer(styles_app, name="styles")
