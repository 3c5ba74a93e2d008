"""``stylize explain OUTPUT``: how a picture was made, and the command that makes it again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app
from pipeline.cli.common import CacheDirOpt, err, errors, out, say


@app.command()
def explain(
    output: Annotated[Path, typer.Argument(help="A picture made by stylize.",
                                           show_default=False)],
    again: Annotated[Path | None, typer.Option(
        "--again", help="Where the printed command writes its picture (default: "
        "NAME.again.SUFFIX beside the output).", show_default=False)] = None,
    command_only: Annotated[bool, typer.Option(
        "--command", help="Print only the command.")] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Show how a picture was made (photo, style, settings, weights, device) from its record."""
    with errors():
        from pipeline.review.provenance import reproduce

        ex = reproduce(output, again=again, cache_dir=cache_dir)
        if not command_only:
            m, r = ex.made, ex.record
            rows = [("picture", str(output)), ("photo", r.input),
                    ("photo sha256", r.input_digest), ("style", m.get("preset", r.style)),
                    *[(f"painting (weight {i['weight']:g})", f"{i['path']}  sha256 {i['digest']}")
                      for i in m.get("style_images", [])],
                    ("weights sha256", m.get("weights_digest", "?")),
                    ("made by", m.get("tool", "?")),
                    ("on", f"{m.get('device', '?')}, {m.get('precision', '?')}, "
                           f"{r.seconds:g} s, finished {r.finished}")]
            if m.get("machine"):
                rows.append(("machine", m["machine"]))
            rows.append(("method", str((m.get("settings") or {}).get("method", "optimize"))))
            if m.get("network"):
                rows.append(("network sha256", str(m["network"])))
            if isinstance(m.get("video"), dict):
                v = m["video"]
                rows.append(("video", f"{v.get('frames')} frames at {v.get('fps')} fps, "
                                      f"{v.get('segments')} segments, sound "
                                      f"{v.get('sound') or 'none'}, rotation "
                                      f"{v.get('rotation')}°, {v.get('codec')}"))
            if m.get("note"):
                rows.append(("note", m["note"]))
            for key, value in rows:
                say(out, f"{key + ':':<28}{value}")
            say(out, "to make it again:")
        # Shell-quoted ($'...' for a newline or ESC): nothing in it for safe_text to change,
        # and pasted it gives the same names back.
        say(out, ex.command_line)
        for warning in ex.warnings:
            say(err, f"warning: {warning}")
