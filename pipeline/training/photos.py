"""The photos a network is trained on: read, checked and decoded like a run's, bounded.

A training photo carries the folder it must stay inside (:class:`TrainingPhoto`): the
rule a run applies to its photos, so training never reads what a run would refuse.  The
photos are decoded small (a few working sides), sampled by the seed when a collection is
larger than the memory bound, and the ones that cannot be used are counted by category,
with the first few reasons kept word for word.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.errors import Cancelled, InputError, UsageError
from pipeline.images import load_image

StopFn = Callable[[], bool]

#: Fewest usable photos a network is trained on.  Flips and sizes make a few pictures of
#: one photo, but only of its subjects and its colours: a network that saw one to three
#: photos repaints unseen ones poorly (it has learnt those few palettes).  Four is a
#: floor, not a recommendation: a few dozen are better (README).
MIN_PHOTOS = 4
#: Photos with a shorter side are refused as too small: enlarged to the working size
#: they would be mostly blur, which teaches the network to paint blur.
MIN_PHOTO_SIDE = 32
#: Photos are decoded with their long side at most this many working sides.  They are
#: trained on whole at the working size times at most 1.25 (TrainOptions.zoom), so a
#: photo of up to 4:1 decoded with a long side of 2.5 sides is never enlarged; keeping
#: the full resolution would cost memory and decoding time and teach nothing.
DECODE_SIDE_FACTOR = 2.5
#: Pixels of decoded photos held in memory at most (768 MiB as 8-bit RGB).  A larger
#: collection is sampled (by the seed) until this is full: training runs for a number of
#: iterations, not epochs, so 20,000 photos are drawn from 600 as well as from
#: 60,000, and a library must not be decoded whole into memory first.
MAX_HELD_PIXELS = 256 << 20
#: Skipped photos whose reasons are kept word for word (the rest are only counted).
MAX_PROBLEMS = 5


@dataclass(frozen=True)
class TrainingPhoto:
    """A photo to train on, with the folder it must stay inside: the same rule as a run's
    photo (a link out of ``root`` is refused as ``outside_input`` unless
    ``follow_symlinks``), so training never reads what the run would refuse."""

    path: Path
    root: Path | None
    follow_symlinks: bool = False


@dataclass(frozen=True)
class Gathered:
    """The training photos read from the paths given, and what became of the others."""

    images: list[Image.Image]
    found: int  # paths given
    skipped: dict[str, int]  # refusals by category (InputError.category)
    problems: tuple[str, ...]  # the first few refusals, one line each
    unused: int = 0  # readable or not, left out because MAX_HELD_PIXELS was reached


def gather_photos(paths: Sequence[TrainingPhoto | Path], side: int, seed: int,
                  should_stop: StopFn | None = None, *,
                  max_held_pixels: int = MAX_HELD_PIXELS) -> Gathered:
    """The photos of ``paths`` decoded for training at a working side of ``side`` px.

    Each is read bounded and decoded by :func:`pipeline.images.load_image` (the checks
    and refusals of a run's photo, the folder it must stay inside included), scaled to a
    long side of at most ``DECODE_SIDE_FACTOR`` × ``side``.
    Photos are taken in an order shuffled by ``seed`` until ``max_held_pixels`` are
    held, then handed back in the order of ``paths`` (so the same photos make the same
    samples).  A refused photo is counted under its category; it does not stop training.
    """
    order = list(range(len(paths)))
    random.Random(seed).shuffle(order)
    kept: dict[int, Image.Image] = {}
    skipped: Counter[str] = Counter()
    problems: list[str] = []
    held = 0
    for n, index in enumerate(order):
        if should_stop is not None and should_stop():
            raise Cancelled("training stopped on request while its photos were read")
        if held >= max_held_pixels:
            return _gathered(kept, len(paths), skipped, problems, len(order) - n)
        given = paths[index]
        # A bare path is a photo named by hand, as ``stylize image`` takes one: no folder.
        photo = given if isinstance(given, TrainingPhoto) else TrainingPhoto(Path(given), None)
        try:
            img = load_image(photo.path, max_long_side=round(side * DECODE_SIDE_FACTOR),
                             min_side=MIN_PHOTO_SIDE, root=photo.root,
                             follow_symlinks=photo.follow_symlinks).rgb
        except InputError as exc:
            skipped[exc.category] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(exc.message)
            continue
        kept[index] = img
        held += img.width * img.height
    return _gathered(kept, len(paths), skipped, problems, 0)


def _gathered(kept: dict[int, Image.Image], found: int, skipped: Counter[str],
              problems: list[str], unused: int) -> Gathered:
    return Gathered([kept[i] for i in sorted(kept)], found, dict(sorted(skipped.items())),
                    tuple(problems), unused)


def check_enough_photos(style: str, gathered: Gathered) -> None:
    usable = len(gathered.images)
    if usable >= MIN_PHOTOS:
        return
    skipped = sum(gathered.skipped.values())
    why = ""
    if skipped:
        kinds = ", ".join(f"{n} {c.replace('_', ' ')}" for c, n in gathered.skipped.items())
        why = f" ({skipped} of {gathered.found} skipped: {kinds})"
    raise UsageError(f"cannot train {style!r}: {usable} usable photo{'s' * (usable != 1)}"
                     f"{why}; training needs at least {MIN_PHOTOS} (a few dozen are better)")
