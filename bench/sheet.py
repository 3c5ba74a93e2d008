"""Contact sheets for the benchmarks: rows of labelled pictures, each scaled to one height."""

from __future__ import annotations

from PIL import Image, ImageDraw

Cell = tuple[str, Image.Image]


def contact_sheet(rows: list[list[Cell]], height: int = 240) -> Image.Image:
    """One row per list, each picture scaled to ``height`` with its label above it."""
    gap, label = 5, 16
    scaled = [[(text, img.convert("RGB").resize((round(img.width * height / img.height), height),
                                                 Image.Resampling.LANCZOS))
               for text, img in row] for row in rows]
    width = max(sum(cell.width + gap for _, cell in row) + gap for row in scaled)
    sheet = Image.new("RGB", (width, len(rows) * (height + label + gap) + gap), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    y = gap
    for row in scaled:
        x = gap
        for text, cell in row:
            draw.text((x + 2, y), text, fill=(220, 220, 220))
            sheet.paste(cell, (x, y + label))
            x += cell.width + gap
        y += height + label + gap
    return sheet
