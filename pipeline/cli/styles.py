"""``stylize styles list`` and ``stylize styles show``: presets, without loading torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pipeline.cli.app import styles_app
from pipeline.cli.common import CacheDirOpt, err, errors, out, say
from pipeline.errors import StylizeError
from pipeline.ui.console import plain

if TYPE_CHECKING:
    from pipeline.config.styles import Preset


def _network(preset: Preset, cache_dir: Path | None) -> dict[str, Any]:
    """What ``networks.describe`` says of the preset's trained network (read from file
    headers only: no torch).  A preset whose network key cannot be made (its weights file
    went missing since it was loaded) has none that could be used."""
    from pipeline.store.cache_dir import default_cache_dir
    from pipeline.training.networks import describe, find_network

    try:
        return describe(find_network(preset, cache_dir or default_cache_dir()))
    except (StylizeError, OSError) as exc:
        return {"trained": False, "problem": str(exc)}


def _network_cell(network: dict[str, Any]) -> str:
    if not network["trained"]:
        return "-"
    steps = network.get("training", {}).get("steps")
    return network["source"] + (f", {steps} steps" if isinstance(steps, int) else "")


@styles_app.command("list")
def styles_list(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """List the style presets that can be used, whether each has a trained network (for
    `method: fast`), and any presets that failed to load."""
    with errors():
        from pipeline.config.styles import Registry

        registry = Registry.discover()
        networks = {name: _network(p, cache_dir) for name, p in registry.presets.items()}
        if json_out:
            import json

            rows = [{"name": p.name, "source": p.source, "overrides": p.overrides,
                     "images": [str(i.path) for i in p.images], "description": p.description,
                     "path": str(p.path), "network": networks[p.name]}
                    for p in registry.presets.values()]
            out.print_json(json.dumps({"styles": rows, "problems": registry.problems}))
        else:
            table = Table("name", "source", "images", "network", "description", box=None)
            for name in registry.names():
                p = registry.presets[name]
                source = p.source + (f" (overrides {p.overrides})" if p.overrides else "")
                # Cells as Text: a preset's description or painting name is never markup.
                table.add_row(*(plain(cell) for cell in (
                    name, source, ", ".join(i.path.name for i in p.images),
                    _network_cell(networks[name]), p.description)))
            out.print(table)
        for problem in registry.problems:
            say(err, problem, label="warning:", style="yellow")


@styles_app.command("show")
def styles_show(name: Annotated[str, typer.Argument(help="Preset name.")],
                cache_dir: CacheDirOpt = None) -> None:
    """Show every setting of a preset, resolved against the defaults, and its trained
    network (where it is, its digest, how it was trained)."""
    with errors():
        import yaml

        from pipeline.config.styles import Registry

        p = Registry.discover().resolve(name)
        doc = {"name": p.name, "source": p.source, "path": str(p.path),
               "description": p.description,
               "images": [{"path": str(i.path), "weight": i.weight} for i in p.images],
               "settings": p.settings.model_dump()}
        if p.overrides:
            doc["overrides"] = p.overrides
        network = _network(p, cache_dir)
        doc["network"] = network if network["trained"] else (
            f"none: train it with stylize train {p.name} --on DIR")
        # soft_wrap: a long path (a network's) is one line, as YAML wrote it.
        out.print(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), end="",
                  markup=False, highlight=False, soft_wrap=True)
