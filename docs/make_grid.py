"""Compose docs/grid.jpg from the outputs of `stylize run docs/grid.yaml`.

One row per sample photo: the photo, then each style.  Cells are 256 px
tall, the file is a modest JPEG so the README stays light.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
PHOTOS = REPO / "examples" / "photos"
OUTPUTS = REPO / "out" / "grid"
STYLES = ["starry-night", "the-scream", "great-wave", "udnie"]
CELL_H = 220
LABEL_H = 22
GAP = 4


def _fit(img: Image.Image) -> Image.Image:
    w = round(img.width * CELL_H / img.height)
    return img.convert("RGB").resize((w, CELL_H), Image.Resampling.LANCZOS)


def main() -> None:
    photos = sorted(PHOTOS.glob("*.png"))
    rows = []
    for photo in photos:
        cells = [_fit(Image.open(photo))]
        for style in STYLES:
            out = OUTPUTS / f"{photo.name}.{style}.jpg"
            cells.append(_fit(Image.open(out)))
        rows.append(cells)
    col_w = [max(row[i].width for row in rows) for i in range(len(STYLES) + 1)]
    width = sum(col_w) + GAP * (len(col_w) + 1)
    height = LABEL_H + len(rows) * (CELL_H + GAP) + GAP
    grid = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    x = GAP
    for i, label in enumerate(["photo", *STYLES]):
        draw.text((x + 4, 5), label, fill=(220, 220, 220))
        x += col_w[i] + GAP
    y = LABEL_H
    for row in rows:
        x = GAP
        for i, cell in enumerate(row):
            grid.paste(cell, (x + (col_w[i] - cell.width) // 2, y))
            x += col_w[i] + GAP
        y += CELL_H + GAP
    grid.save(DOCS / "grid.jpg", quality=82, optimize=True, progressive=True)
    print(f"wrote {DOCS / 'grid.jpg'} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
