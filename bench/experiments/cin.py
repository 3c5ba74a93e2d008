"""Conditional instance normalization (Dumoulin, Shlens and Kudlur 2017): one network for
several paintings, and a new painting learned through its normalization alone.

The network's instance norms already carry a scale and a shift per channel; CIN gives each
painting its own and shares every convolution.  Two commands, both on the shared collection
less the held-out photos, at each preset's own training settings, snapshots kept at marks
(minutes of training) for bench/fast_quality.py to score:

    python -m bench.experiments.cin joint --styles udnie,starry-night,the-scream \
        --out bench/out/cin-joint --minutes 20 --marks 10,20
    python -m bench.experiments.cin new --style great-wave --out bench/out/cin-gw-norm \
        --trunk bench/out/cin-joint/udnie-020min.safetensors \
        --norms 'bench/out/cin-joint/*-020min.safetensors' --only-norm --minutes 15

``joint`` starts each painting from its shipped network: the convolutions from the first
style's, each painting's norms from its own; one Adam over the shared convolutions and the
norms, the paintings taking turns step by step; each snapshot is one file a painting (the
shared convolutions with its own norms), a plain network the pipeline can run.
``new`` learns a painting as if it were new: the convolutions from ``--trunk``, the norms
the mean of ``--norms`` (the paintings learnt so far), then either the norms alone
(``--only-norm``: the convolutions frozen, as Dumoulin et al. add a style) or everything.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import torch
from PIL import Image

from bench.common import COLLECTION, HELD_OUT


def _is_norm(name: str) -> bool:
    return ".norm." in name


def _trainer(style: str, photos, start, threads: int, lr: float | None = None):  # type: ignore[no-untyped-def]
    from pipeline.config.styles import Registry
    from pipeline.engine.network import NetworkConfig
    from pipeline.engine.training import Trainer, TrainOptions, training_sides
    from pipeline.render.targets import StyleTargetStore
    from pipeline.store.cache import ArtifactCache

    s = Registry.discover().resolve(style).settings
    options = TrainOptions(side=s.train_size, batch=s.train_batch, steps=10**9,
                           learning_rate=lr or s.train_learning_rate, seed=s.seed,
                           config=NetworkConfig(width=s.network_width, noise=s.network_noise))
    preset = Registry.discover().resolve(style)
    targets = StyleTargetStore(ArtifactCache()).get(s, preset, training_sides(s, options))
    return Trainer(s, targets, photos, options, start=start)


def _step(trainer, optimizer) -> float:  # type: ignore[no-untyped-def]
    """One step of ``trainer``'s objective on its own draw of photos, through ``optimizer``
    (the trainer's own step, with the optimizer shared among paintings)."""
    from pipeline.engine import train_samples

    o = trainer.options
    samples = train_samples.random_samples(trainer.photos, o.batch, trainer.sides,
                                           trainer.settings.style_scale, trainer.generator)
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for sample in samples:
        loss, _ = trainer._objective(trainer.learner, sample.photo, sample.style_side,
                                     trainer.generator)
        (loss / len(samples)).backward()
        total += float(loss.detach())
    optimizer.step()
    trainer.step += 1
    return total / len(samples)


def _average(trainer, decay: float) -> None:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        for a, w in zip(trainer.net.parameters(), trainer.learner.parameters(), strict=True):
            a.lerp_(w, 1 - decay)


def _loop(out: Path, trainers: dict, optimizer, minutes: float, marks: list[float]) -> None:  # type: ignore[no-untyped-def]
    """Steps the paintings in turn until ``minutes`` of training; snapshots at ``marks``."""
    from pipeline.engine.network_file import write_network

    out.mkdir(parents=True, exist_ok=True)
    names, trained_s, step, last_log, losses = list(trainers), 0.0, 0, time.perf_counter(), []
    while trained_s < minutes * 60:
        t0 = time.perf_counter()
        name = names[step % len(names)]
        losses.append(_step(trainers[name], optimizer))
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        for trainer in trainers.values():  # the shared weights moved for every painting
            _average(trainer, decay)
        before, trained_s = trained_s, trained_s + time.perf_counter() - t0
        for mark in marks:
            if before < mark * 60 <= trained_s:
                for other, trainer in trainers.items():
                    write_network(out / f"{other}-{int(mark):03d}min.safetensors", trainer.net)
                (out / f"marks-{int(mark):03d}min.json").write_text(
                    json.dumps({"step": step, "trained_s": round(trained_s, 1)}))
        if time.perf_counter() - last_log >= 60:
            entry = {"step": step, "trained_s": round(trained_s, 1),
                     "loss": round(sum(losses) / len(losses), 4)}
            with (out / "log.jsonl").open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            print(json.dumps(entry), flush=True)
            losses, last_log = [], time.perf_counter()


def _tie(nets: list[torch.nn.Module]) -> None:
    """Every network's convolutions become the first one's (the same parameters)."""
    for net in nets[1:]:
        for module, first in zip(net.modules(), nets[0].modules(), strict=True):
            if isinstance(module, torch.nn.Conv2d):
                module.weight = first.weight
                if module.bias is not None:
                    module.bias = first.bias


def _unique(params) -> list[torch.nn.Parameter]:  # type: ignore[no-untyped-def]
    seen, out = set(), []
    for p in params:
        if id(p) not in seen and p.requires_grad:
            seen.add(id(p))
            out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["joint", "new"])
    ap.add_argument("--styles", default="udnie,starry-night,the-scream")
    ap.add_argument("--style", default="great-wave")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--marks", default="5,10,15,20")
    ap.add_argument("--trunk", type=Path, help="new: the network whose convolutions are used")
    ap.add_argument("--norms", help="new: a glob of networks whose mean norms start it")
    ap.add_argument("--only-norm", action="store_true", help="new: train the norms alone")
    ap.add_argument("--lr", type=float, help="the learning rate (default: the preset's)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from pipeline.engine.network_file import read_network

    torch.set_num_threads(args.threads)
    photos = [Image.open(p).convert("RGB") for p in sorted(COLLECTION.glob("*.jpg"))
              if p.name not in HELD_OUT]
    marks = sorted(float(m) for m in args.marks.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "settings.json").write_text(json.dumps(vars(args), default=str, indent=1))
    if args.command == "joint":
        styles = args.styles.split(",")
        trainers = {s: _trainer(s, photos, read_network(
            Path("styles") / s / "network.safetensors").net, args.threads, args.lr)
            for s in styles}
        first = trainers[styles[0]]
        # The trunk is the first painting's: its convolutions copied into every learner.
        for t in trainers.values():
            t.learner.load_state_dict({**t.learner.state_dict(), **{
                k: v for k, v in first.learner.state_dict().items() if not _is_norm(k)}})
            t.net.load_state_dict(t.learner.state_dict())
        _tie([t.learner for t in trainers.values()])
        params = _unique(p for t in trainers.values() for p in t.learner.parameters())
    else:
        assert args.trunk and args.norms, "new needs --trunk and --norms"
        trunk = read_network(args.trunk).net.state_dict()
        banks = [read_network(Path(p)).net.state_dict() for p in sorted(glob.glob(args.norms))]
        start = read_network(args.trunk).net
        start.load_state_dict({k: (torch.stack([b[k] for b in banks]).mean(0)
                                   if _is_norm(k) else v) for k, v in trunk.items()})
        t = _trainer(args.style, photos, start, args.threads, args.lr)
        trainers = {args.style: t}
        if args.only_norm:
            for name, p in t.learner.named_parameters():
                p.requires_grad_(_is_norm(name))
        params = _unique(t.learner.parameters())
    lr = args.lr or next(iter(trainers.values())).options.learning_rate
    print(f"{len(params)} tensors, {sum(p.numel() for p in params):,} weights trained",
          flush=True)
    _loop(args.out, trainers, torch.optim.Adam(params, lr=lr), args.minutes, marks)


if __name__ == "__main__":
    main()
