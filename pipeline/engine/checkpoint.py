"""The training checkpoint's format: the whole state of a training as one safetensors file.

Tensors: the learner's (``net.``), its average's (``avg.``, when averaging), Adam's moments
and step counts by parameter name (``adam.<name>.<field>``: ``torch.save`` of the
optimizer's state dict would be a pickle), the sample generator's state (``rng``).
Metadata: the format, the step, the options that must match on resume, the caller's
``key`` (e.g. the network's cache key), the gradient scaler's state, and the digest of
the tensors.  Nothing is pickled, and a checkpoint is checked whole before any of it is
used: its format, digest, state, options and key, and every tensor's name and shape.

Apart from the training steps (:mod:`pipeline.engine.training`), which call these
functions on a trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import safetensors.torch
import torch

from pipeline.engine.network import TransformNet
from pipeline.engine.network_file import read_safetensors
from pipeline.errors import WeightsError
from pipeline.store import fsread, jsonio
from pipeline.store.hashing import digest_tensors

__all__ = ["CHECKPOINT_DTYPES", "CHECKPOINT_FORMAT", "MAX_CHECKPOINT_BYTES", "encode", "read",
           "restore"]

#: In every checkpoint's metadata; a file without it is refused.
CHECKPOINT_FORMAT = "stylize-train-checkpoint-2"
#: What a checkpoint holds: weights and Adam's moments and step counts in float32, the
#: sample generator's state as bytes.
CHECKPOINT_DTYPES = frozenset({torch.float32, torch.uint8})
#: The largest checkpoint read: a network file's bound, three times (weights and moments).
MAX_CHECKPOINT_BYTES = 4 * (256 << 20)


class _Options(Protocol):
    def identity(self) -> dict[str, Any]: ...


class TrainingState(Protocol):
    """What a checkpoint saves and restores of a trainer (read here; restored in place)."""

    @property
    def learner(self) -> TransformNet: ...
    @property
    def net(self) -> TransformNet: ...
    @property
    def optimizer(self) -> torch.optim.Optimizer: ...
    @property
    def generator(self) -> torch.Generator: ...
    @property
    def scaler(self) -> Any: ...  # torch.amp.GradScaler
    @property
    def step(self) -> int: ...
    @property
    def options(self) -> _Options: ...


def encode(trainer: TrainingState, key: str = "") -> bytes:
    """The whole training state of ``trainer`` as safetensors bytes (see the module doc)."""
    tensors = {f"net.{n}": t.detach().cpu().contiguous()
               for n, t in trainer.learner.state_dict().items()}
    if trainer.net is not trainer.learner:
        tensors |= {f"avg.{n}": t.detach().cpu().contiguous()
                    for n, t in trainer.net.state_dict().items()}
    names = [n for n, _ in trainer.learner.named_parameters()]
    for index, state in trainer.optimizer.state_dict()["state"].items():
        for field_name, value in state.items():
            tensors[f"adam.{names[index]}.{field_name}"] = (
                torch.as_tensor(value).detach().cpu().contiguous())
    tensors["rng"] = trainer.generator.get_state()
    state = {"step": trainer.step, "key": key, "options": trainer.options.identity(),
             "scaler": trainer.scaler.state_dict()}
    metadata = {"format": CHECKPOINT_FORMAT, "sha256": digest_tensors(tensors),
                "state": json.dumps(state, sort_keys=True)}
    return safetensors.torch.save(tensors, metadata=metadata)


def read(path: Path) -> tuple[bytes, str]:
    """A checkpoint file's bytes (bounded, a regular file) and the name refusals give it."""
    try:
        return fsread.read_bounded(path, MAX_CHECKPOINT_BYTES, "a training checkpoint"), path.name
    except OSError as exc:
        raise refusal(path.name, f"cannot be read ({exc.strerror or exc})") from None


def restore(trainer: TrainingState, data: bytes, source: str, key: str = "") -> int:
    """Load checkpoint ``data`` into ``trainer``; the step it was taken at.  Nothing of a
    refused checkpoint is used (one :class:`WeightsError` line, category ``checkpoint``)."""
    tensors, metadata = read_safetensors(data, source, what="training checkpoint",
                                         category="checkpoint", dtypes=CHECKPOINT_DTYPES)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise refusal(source, "is not a training checkpoint of this version")
    if digest_tensors(tensors) != metadata.get("sha256"):
        raise refusal(source, "is corrupt (its tensors do not match their digest)")
    try:
        state = jsonio.loads(metadata.get("state", "").encode())
        step, options, saved_key, scaler = (state["step"], state["options"],
                                            state["key"], state["scaler"])
    except (ValueError, KeyError, TypeError):
        raise refusal(source, "is corrupt (its training state is unreadable)") from None
    if isinstance(options, dict) and "crop" not in options:
        # Saved before photos were seen through windows (whole photos): the run goes on
        # with today's windows rather than throwing away its steps.
        options = {**options, "crop": trainer.options.identity().get("crop")}
    if options != trainer.options.identity() or saved_key != key:
        raise refusal(source, "was made for other training settings; train anew "
                              "(--force) or resume with the settings it was made with",
                      corrupt=False)
    if type(step) is not int or step < 0:
        raise refusal(source, "is corrupt (its step is not a count)")
    _load_tensors(trainer, tensors, source)
    if scaler and trainer.scaler.is_enabled():
        # Empty when saved without float16 (a checkpoint may move between devices and
        # precisions): the scaler then starts afresh, as it would at step 0.
        try:
            trainer.scaler.load_state_dict(scaler)
        except (RuntimeError, TypeError, KeyError, AttributeError):
            raise refusal(source, "is corrupt (its loss scale is unreadable)") from None
    return step


def _load_tensors(trainer: TrainingState, tensors: dict[str, torch.Tensor],
                  source: str) -> None:
    net = {n.removeprefix("net."): t for n, t in tensors.items() if n.startswith("net.")}
    avg = {n.removeprefix("avg."): t for n, t in tensors.items() if n.startswith("avg.")}
    params = dict(trainer.learner.named_parameters())
    shapes = {n: t.shape for n, t in trainer.learner.state_dict().items()}
    adam: dict[int, dict[str, torch.Tensor]] = {}
    index = {n: i for i, n in enumerate(params)}
    for name, t in tensors.items():
        if not name.startswith("adam."):
            continue
        param, _, field_name = name.removeprefix("adam.").rpartition(".")
        if param not in index or (field_name != "step" and t.shape != params[param].shape):
            raise refusal(source, f"does not fit this network (at {name!r})")
        adam.setdefault(index[param], {})[field_name] = t
    averaged = trainer.net is not trainer.learner
    if ({n: t.shape for n, t in net.items()} != shapes or "rng" not in tensors
            or {n: t.shape for n, t in avg.items()} != (shapes if averaged else {})):
        raise refusal(source, "does not fit this network (its tensors differ)")
    try:
        trainer.generator.set_state(tensors["rng"])
    except (RuntimeError, TypeError, ValueError):
        raise refusal(source, "is corrupt (its random state is unreadable)") from None
    trainer.learner.load_state_dict(net)
    if averaged:
        trainer.net.load_state_dict(avg)
    groups = trainer.optimizer.state_dict()["param_groups"]
    trainer.optimizer.load_state_dict({"state": adam, "param_groups": groups})


def refusal(source: str, why: str, *, corrupt: bool = True) -> WeightsError:
    advice = "; delete it to train anew" if corrupt else ""
    prefix = f"{source}: " if source else ""
    return WeightsError(f"{prefix}{why}{advice}", category="checkpoint")
