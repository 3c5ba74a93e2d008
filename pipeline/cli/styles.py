"""``stylize styles list`` and ``stylize styles show``: presets, without loading torch."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.app import styles_app
from pipeline.cli.common import err, errors, out, say
from pipeline.ui.console import plain


@styles_app.command("list")
def styles_list(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the style presets that can be used, and any that failed to load."""
    with errors():
        from pipeline.styles import Registry

        registry = Registry.discover()
        if json_out:
            import json

            rows = [{"name": p.name, "source": p.source, "overrides": p.overrides,
                     "images": [str(i.path) for i in p.images], "description": p.description,
                     "path": str(p.path)} for p in registry.presets.values()]
            out.print_json(json.dumps({"styles": rows, "problems": registry.problems}))
        else:
            table = Table("name", "source", "images", "description", box=None)
            for name in registry.names():
                p = registry.presets[name]
                source = p.source + (f" (overrides {p.overrides})" if p.overrides else "")
                # Cells as Text: a preset's description or painting name is never markup.
                table.add_row(*(plain(cell) for cell in (
                    name, source, ", ".join(i.path.name for i in p.images), p.description)))
            out.print(table)
        for problem in registry.problems:
            say(err, problem, label="warning:", style="yellow")


@styles_app.command("show")
def styles_show(name: Annotated[str, typer.Argument(help="Preset name.")]) -> None:
    """Show every setting of a preset, resolved against the defaults."""
    with errors():
        import yaml

        from pipeline.styles import Registry

        p = Registry.discover().resolve(name)
        doc = {"name": p.name, "source": p.source, "path": str(p.path),
               "description": p.description,
               "images": [{"path": str(i.path), "weight": i.weight} for i in p.images],
               "settings": p.settings.model_dump()}
        if p.overrides:
            doc["overrides"] = p.overrides
        out.print(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), end="",
                  markup=False, highlight=False)


