"""One photo (or one batch of same-size photos), start to finish, where the engine is.

Decode the photo's bytes, get the style targets, optimize, encode the result.
Every executor calls :func:`render_batch` (which calls :func:`render` for a batch of
one, or for each photo of a batch that failed together), so a photo is stylized the
same way whether it comes from ``stylize image``, ``run`` or ``watch``, in this
process or on a cluster worker.  The out-of-memory policy is
written once, here: a photo that runs out of memory is tried once more at half
the size with a fresh engine, and the result says so.

Nothing here touches the job's files: bytes come in, bytes go out.  Writing the
output and its record is the driver's (:mod:`pipeline.run.runner`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from PIL import Image

from pipeline.config.geometry import output_size
from pipeline.config.settings import Settings
from pipeline.config.styles import Preset
from pipeline.config.views import settings_digest
from pipeline.engine.device import float_signature
from pipeline.engine.fast import FastStylizer
from pipeline.engine.feature_carry import FeatureCarry
from pipeline.engine.network_file import LoadedNetwork
from pipeline.engine.optimize import Engine, Start
from pipeline.engine.phase_lock import PhaseLock
from pipeline.engine.style_targets import StyleTargets
from pipeline.errors import (
    Cancelled,
    InputError,
    OutOfMemoryError,
    PictureError,
    StylizeError,
    UsageError,
)
from pipeline.executors.base import Finished, Work
from pipeline.images import (
    LoadedImage,
    decode_photo,
    encode_image,
    output_metadata,
)
from pipeline.images.tensors import with_strength
from pipeline.plan.methods import method_of, needs_network, retry_size
from pipeline.progress import ProgressFn

if TYPE_CHECKING:
    from pipeline.video.steady import Carried, Motion  # OpenCV: videos only

logger = logging.getLogger(__name__)

#: ``targets(settings, preset, sides)``: the style targets of these sides for a photo
#: stylized with ``settings`` in ``preset``'s style, from wherever this executor keeps
#: them (a cache-backed store, or what the driver shipped).
TargetSource = Callable[[Settings, Preset, list[int]], StyleTargets]
#: ``networks(preset)``: the checked, trained network of a fast preset, from wherever
#: this executor keeps them (the cache and preset folders, or what the driver shipped).
NetworkSource = Callable[[Preset], LoadedNetwork]
#: ``on_progress(work_id, progress)``.
WorkProgressFn = Callable[[int, object], None]
#: What stylizes: the optimizer, or a trained network (``method: fast``).
Stylist = Engine | FastStylizer


class Workshop:
    """Engines and networks built once per settings, and where targets come from."""

    def __init__(self, targets: TargetSource, worker: str = "",
                 networks: NetworkSource | None = None) -> None:
        self.targets = targets
        self.networks = networks
        self.worker = worker
        self._engines: dict[str, Stylist] = {}
        # The last photo decoded: the next style of the same photo (a watched photo, a
        # photo of a batch run in several styles) needs the same pixels.
        self._decoded: tuple[tuple[str, int, int], LoadedImage] | None = None

    def engine(self, preset: Preset) -> Stylist:
        """What stylizes photos of this preset: its optimizer, or its trained network."""
        settings = preset.settings
        if not needs_network(settings):
            key = settings_digest(settings)
            if key not in self._engines:
                self._engines[key] = Engine(settings)
            return self._engines[key]
        if self.networks is None:
            raise UsageError("this executor cannot use trained networks")
        network = self.networks(preset)
        key = f"{settings_digest(settings)}:{network.digest}"
        if key not in self._engines:
            self._engines[key] = (FastStylizer(settings, network) if settings.method == "fast"
                                  else Engine(settings, network))
        return self._engines[key]

    def decode(self, work: Work, s: Settings) -> tuple[LoadedImage, list[int]]:
        """The photo at no more than the output size, and the style sides it needs
        (:mod:`pipeline.plan.methods`); refused with its name if unusable."""
        key = (work.digest, s.max_pixels, s.size)
        if work.digest and self._decoded is not None and self._decoded[0] == key:
            photo = self._decoded[1]
        else:
            # Decoding above the output size would only cost memory: JPEGs are even
            # decoded at a reduced size directly (draft mode).
            photo = decode_photo(work.photo, work.name, max_pixels=s.max_pixels,
                                 max_long_side=s.size)
            self._decoded = (key, photo)
        want = work.needs
        if (want is not None and s.size == work.preset.settings.size
                and output_size(*photo.rgb.size, s.size) == want.output):
            return photo, list(want.sides)  # as the driver found from the header
        # Decoded to another size than the header said, or the retry's smaller size.
        try:
            # Refuse now, with the file's name, a shape that has no usable scale at
            # this size (1×5000 at size 64 is 1×64): too_small, never a traceback.
            return photo, method_of(s).style_sides(photo.rgb.width, photo.rgb.height, s)
        except InputError as exc:
            raise InputError(f"{work.name}: {exc.message}", category=exc.category) from None

    def forget_engines(self) -> None:
        """Let go of every engine and picture (after running out of memory), so a retry
        starts afresh."""
        self._engines.clear()
        self._decoded = None


def free_memory(device: torch.device | None = None) -> None:
    gc.collect()
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def encode(work: Work, engine: Stylist, photo: LoadedImage, picture: Image.Image,
           seconds: float, worker: str = "") -> Finished:
    """The finished picture as the bytes of its file, with the photo's metadata and alpha."""
    s = engine.settings
    picture = with_strength(picture, photo.rgb, s.strength)
    meta = output_metadata(photo, policy=s.metadata, software=work.software,
                           size=picture.size)
    data = encode_image(picture, work.fmt, quality=s.quality, alpha=photo.alpha, metadata=meta)
    return Finished(work.id, data, picture.width, picture.height, size=s.size, seconds=seconds,
                    worker=worker, metadata_notes=tuple(photo.metadata_notes) + tuple(meta.notes),
                    details={"device": str(engine.device),
                             "precision": str(engine.dtype).removeprefix("torch."),
                             "machine": float_signature(engine.device),
                             **_method_details(engine)})


def _method_details(engine: Stylist) -> dict[str, str]:
    """What a fast result's record must name: the network that made it."""
    if isinstance(engine, FastStylizer):
        return {"method": "fast", "network": engine.digest}
    return {"network": engine.network.digest} if engine.network is not None else {}


def _attempt(shop: Workshop, work: Work, preset: Preset, on_progress: ProgressFn | None,
             should_stop: Callable[[], bool] | None, start: float) -> Finished:
    engine = shop.engine(preset)
    photo, sides = shop.decode(work, engine.settings)
    targets = shop.targets(engine.settings, preset, sides) if sides else {}
    picture = engine.stylize(photo.rgb, targets, on_progress=on_progress,
                             should_stop=should_stop)
    return encode(work, engine, photo, picture, time.perf_counter() - start, shop.worker)


def render(shop: Workshop, work: Work, *, on_progress: ProgressFn | None = None,
           should_stop: Callable[[], bool] | None = None) -> Finished:
    """Stylize one photo; a failure of this photo is returned, setup errors are raised."""
    start = time.perf_counter()
    try:
        where: str | None = None  # set when the first attempt ran out of memory
        try:
            return _attempt(shop, work, work.preset, on_progress, should_stop, start)
        except torch.OutOfMemoryError:
            where = f" on {shop.engine(work.preset).device}"
        except MemoryError:
            where = ""
        # Retried outside the except clause, so that the failed attempt's tensors
        # (held by the traceback's frames) are freed before the second one.
        return _retry_smaller(shop, work, where, on_progress, should_stop, start)
    except Exception as exc:
        return failed(work, exc, time.perf_counter() - start, shop.worker)


def _retry_smaller(shop: Workshop, work: Work, where: str, on_progress: ProgressFn | None,
                   should_stop: Callable[[], bool] | None, start: float) -> Finished:
    """One more try at a smaller size, with a fresh engine; the photo is decoded again.

    The record then holds the smaller size's key, so a later run tries the full
    size again.  Raises ``OutOfMemoryError`` when that cannot be tried or fails too.
    """
    size = work.preset.settings.size
    smaller = retry_size(size)
    shop.forget_engines()
    free_memory()
    if smaller is None:
        raise OutOfMemoryError(f"{work.name}: out of memory{where} at size {size}; "
                               "try a smaller size")
    logger.info("%s: out of memory%s at size %d; trying once more at size %d",
                work.name, where, size, smaller)
    small = work.preset.with_overrides({"size": smaller})
    try:
        result = _attempt(shop, work, small, on_progress, should_stop, start)
    except (torch.OutOfMemoryError, MemoryError):
        result = None
    if result is None:  # outside the except clause, for the same reason as in render
        shop.forget_engines()
        free_memory()
        raise OutOfMemoryError(f"{work.name}: out of memory{where} at size {size} and at "
                               f"size {smaller}; try a smaller size")
    note = f"{work.name}: out of memory{where} at size {size}; written at size {smaller} instead"
    return replace(result, note=note)


def render_segment(shop: Workshop, work: Work, *, on_progress: ProgressFn | None = None,
                   should_stop: Callable[[], bool] | None = None) -> Finished:
    """One segment of a video: its frames stylized by either method, steadied, encoded."""
    from pipeline.video.segment import make_segment  # PyAV, OpenCV: videos only

    assert work.segment is not None
    start = time.perf_counter()
    try:
        engine = shop.engine(work.preset)
        s = engine.settings
        targets: StyleTargets = {}
        # The segment's frames, its warm-up first, carry their features on (fast path).
        carry = FeatureCarry.for_steady(s.steady) if s.steady else None
        job = work.segment
        lock = (PhaseLock(len(job.frames), job.segment.warmup, origin=job.origin)
                if s.steady else None)

        def stylize(frames: list[Image.Image], motions: list[Motion | None],
                    carried: list[Carried | None]) -> list[Image.Image]:
            """The frames stylized (the segment mixes ``strength`` in once steadied)."""
            nonlocal targets
            if isinstance(engine, FastStylizer):
                # Steady frames are locked to the scene's lattice phase, their noise
                # channels moving with the scene (fixed on the screen, what the network
                # paints from them would slide over a moving scene); steady 0 makes each
                # frame as the photo alone would be made.
                return engine.stylize_batch(frames, noise=not s.steady, carry=carry,
                                            lock=lock, motions=motions)
            if not targets:
                sides = method_of(s).style_sides(*frames[0].size, s)
                targets = shop.targets(s, work.preset, sides)
            return [engine.stylize(f, targets, should_stop=should_stop,
                                   start=None if c is None else Start(c.image(), c.trust[..., 0]))
                    for f, c in zip(frames, carried, strict=True)]

        # The optimizer starts each frame from the previous one, carried along the flow.
        data = make_segment(work.photo, work.name, work.segment, s, work.fmt, stylize,
                            sequential=not isinstance(engine, FastStylizer),
                            on_progress=on_progress, should_stop=should_stop)
    except Exception as exc:
        return failed(work, exc, time.perf_counter() - start, shop.worker)
    return Finished(work.id, data, size=s.size, seconds=time.perf_counter() - start,
                    worker=shop.worker,
                    details={"device": str(engine.device),
                             "precision": str(engine.dtype).removeprefix("torch."),
                             "machine": float_signature(engine.device),
                             **_method_details(engine)})


def failed(work: Work, exc: Exception, seconds: float, worker: str = "") -> Finished:
    """The result of a photo whose processing raised ``exc``; setup and stop errors re-raised."""
    if isinstance(exc, InputError | OutOfMemoryError | PictureError):
        return Finished(work.id, category=exc.category, message=exc.message, seconds=seconds,
                        worker=worker)
    if isinstance(exc, StylizeError | Cancelled):
        raise exc  # the weights, a style image, the configuration, a stop: not this photo's
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return Finished(work.id, category="out_of_memory", seconds=seconds, worker=worker,
                        message=f"{work.name}: out of memory; try a smaller size")
    # A bug or an unforeseen library error: this photo only.
    logger.error("unexpected error while stylizing %s", work.name, exc_info=exc)
    return Finished(work.id, category="internal", seconds=seconds, worker=worker,
                    message=f"{work.name}: {type(exc).__name__}: {exc}")


@dataclass
class _Decoded:
    work: Work
    photo: LoadedImage
    sides: list[int]


def render_batch(shop: Workshop, works: list[Work], *, on_progress: WorkProgressFn,
                 should_stop: Callable[[], bool] | None = None) -> list[Finished]:
    """Photos of one preset and output size optimized together; each still fails alone.

    A photo that cannot be decoded fails before the batch starts, and one whose
    decoded size differs from the others' goes alone.  If the batch runs out of
    memory (or fails otherwise), its photos are done one by one, each with the
    single photo's retry.  A batch's time is shared equally by its photos.
    """
    if len(works) == 1:
        render_one = render if works[0].segment is None else render_segment
        return [render_one(shop, works[0], on_progress=_progress_of(works[0], on_progress),
                           should_stop=should_stop)]
    start = time.perf_counter()
    engine = shop.engine(works[0].preset)
    results: list[Finished] = []
    decoded: list[_Decoded] = []
    for work in works:
        try:
            decoded.append(_Decoded(work, *shop.decode(work, engine.settings)))
        except Exception as exc:
            results.append(failed(work, exc, 0.0, shop.worker))
    size = decoded[0].photo.rgb.size if decoded else None
    batch = [d for d in decoded if d.photo.rgb.size == size]
    alone = [d.work for d in decoded if d.photo.rgb.size != size]
    pictures = _stylize_together(shop, engine, batch, on_progress, should_stop)
    if pictures is None:
        alone = [d.work for d in batch] + alone
    else:
        share = (time.perf_counter() - start) / len(batch)
        for item, picture in zip(batch, pictures, strict=True):
            try:
                results.append(encode(item.work, engine, item.photo, picture, share,
                                      shop.worker))
            except Exception as exc:
                results.append(failed(item.work, exc, share, shop.worker))
    for work in alone:
        results.append(render(shop, work, on_progress=_progress_of(work, on_progress),
                              should_stop=should_stop))
    return results


def _progress_of(work: Work, on_progress: WorkProgressFn) -> ProgressFn:
    return lambda p: on_progress(work.id, p)


def _stylize_together(shop: Workshop, engine: Stylist, batch: list[_Decoded],
                      on_progress: WorkProgressFn,
                      should_stop: Callable[[], bool] | None) -> list[Image.Image] | None:
    """The batch's pictures, or None when it should be done one photo at a time."""
    if len(batch) < 2:
        return None
    sides = batch[0].sides
    targets = shop.targets(engine.settings, batch[0].work.preset, sides) if sides else {}
    last = batch[-1].work.id  # the progress view shows the latest photo started
    pictures: list[Image.Image] | None = None
    try:
        pictures = engine.stylize_batch([d.photo.rgb for d in batch], targets,
                                        on_progress=lambda p: on_progress(last, p),
                                        should_stop=should_stop)
    except (torch.OutOfMemoryError, MemoryError):
        pass  # memory is freed below, outside the except clause
    except PictureError:
        pass  # one by one, so that the photos whose pictures are finite still get them
    except (StylizeError, Cancelled):
        raise
    except Exception as exc:
        logger.warning("a batch of %d photos failed (%s); doing them one by one",
                       len(batch), exc)
    if pictures is None:
        free_memory(engine.device)
    return pictures
