"""The executor seam: what crosses between the runner (the driver) and where photos are made.

The runner plans, reads each photo's bytes, and writes every result and record;
an executor only turns :class:`Work` (plain, picklable data: the photo's bytes,
the resolved preset, the output format) into :class:`Finished` (the encoded
picture, or why there is none).  It never opens a file of the job, so the same
guarantees (atomic outputs, the record written last, resume, the lock) hold
whether the work is done in this process or on a cluster that shares no disk.

Progress comes back as :class:`Started` and :class:`Step` events through the
callback given to :meth:`Executor.bind`.  Errors about one photo come back as a
``Finished`` with a category; errors about the setup (the weights, a style
image, the configuration) and the stopping ones (``Cancelled``) are raised from
:meth:`Executor.wait` as the exception itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pipeline.config.styles import Preset
from pipeline.plan.methods import Needs
from pipeline.video.segments import SegmentJob

if TYPE_CHECKING:
    from pipeline.progress import Progress

__all__ = ["ExecEvent", "Executor", "Finished", "Started", "Step", "TargetCounts",
           "TrainsRemotely", "Work"]


@dataclass(frozen=True)
class Work:
    """One photo in one style, as an executor sees it."""

    id: int  # unique within a run
    name: str  # the photo's file name, for messages (already safe to show)
    photo: bytes  # the photo file's content, read by the driver
    preset: Preset  # fully resolved settings and the style images
    fmt: str  # jpeg, png, webp or tiff
    digest: str = ""  # sha256 of ``photo``: the same photo in several styles is decoded once
    software: str = ""  # written into the output's metadata
    #: What the photo needs, from its header (``pipeline.plan.methods``); None when the header
    #: was unusable or the shape cannot be made at this size (it then fails with the
    #: decoder's or the method's reason, with its name).
    needs: Needs | None = None
    #: For one segment of a video (``photo`` then holds the video's bytes): which frames,
    #: and the result is the segment's encoded video.  None for a photo.
    segment: SegmentJob | None = None


@dataclass(frozen=True)
class Finished:
    """What became of one :class:`Work`: the encoded picture, or a category and a reason."""

    id: int
    data: bytes | None = None
    width: int = 0
    height: int = 0
    category: str = ""  # set when data is None
    message: str = ""
    #: Said to the user even when the photo is done, e.g. that it was made smaller after
    #: running out of memory.  The record then holds the size that was used.
    note: str = ""
    size: int = 0  # the long side that was used
    seconds: float = 0.0
    worker: str = ""
    metadata_notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # device, precision, ...

    @property
    def ok(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class Started:
    id: int
    worker: str = ""


@dataclass(frozen=True)
class Step:
    id: int
    progress: Progress
    worker: str = ""


ExecEvent = Started | Step
ExecEventFn = Callable[[ExecEvent], None]


@dataclass
class TargetCounts:
    """Style targets computed, read from the cache, and sent to workers; trained networks
    and videos sent to workers (once per network or video, like a target)."""

    computed: int = 0
    cached: int = 0
    shipped: int = 0
    networks: int = 0
    videos: int = 0

    def __sub__(self, before: TargetCounts) -> TargetCounts:
        """What happened between two snapshots (an executor's counts are running totals)."""
        return TargetCounts(self.computed - before.computed, self.cached - before.cached,
                            self.shipped - before.shipped, self.networks - before.networks,
                            self.videos - before.videos)


@runtime_checkable
class TrainsRemotely(Protocol):
    """An executor's optional capability: training a network where it makes pictures
    (a Ray worker), driven from here, its checkpoints kept here."""

    def remote_training(self, on_step: Callable[[Any], None] | None,
                        should_stop: Callable[[], bool] | None) -> Any:
        """Something ``train_job.ensure_network`` takes as ``remote``."""


class Executor(Protocol):
    """Where photos are stylized.  The runner keeps ``capacity()`` batches in flight."""

    @property
    def counts(self) -> TargetCounts:
        """Style targets over the executor's life so far (a snapshot)."""

    def bind(self, on_event: ExecEventFn, should_stop: Callable[[], bool] | None) -> None:
        """Where to send progress, and what to ask whether to give up (between steps)."""

    def prepare(self, preset: Preset, needs: Needs | None = None) -> None:
        """Make the preset's network (if its method needs one) and the style targets a
        photo needs available (None: the network only).  An executor that cannot make
        targets where the photo is made also makes those of the out-of-memory retry."""

    def batch_size(self, preset: Preset, width: int, height: int) -> int:
        """How many photos of this output size to submit together (1: one at a time)."""

    def capacity(self) -> int:
        """How many batches the runner should keep submitted at once."""

    def submit(self, batch: list[Work]) -> None:
        """Start (or queue) a batch of photos of one preset."""

    def wait(self) -> list[Finished]:
        """Block until at least one submitted batch is finished; return its results."""

    def cancel(self) -> None:
        """Drop everything submitted and not yet returned; nothing partial comes back."""

    def close(self) -> None:
        """Release workers and memory; the executor is not used afterwards."""
