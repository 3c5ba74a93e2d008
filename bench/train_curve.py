"""Train a preset's network on the shared collection and keep snapshots along the way.

The quality-against-time curve of the fast path: the network is trained with the
preset's settings (or overrides) on the collection's photos less the held-out ones,
checkpointed every few minutes (a killed run resumes: run the same command again), and
a copy of the network is kept at each time mark (minutes of training, not of wall
clock, so a resumed run keeps its marks).  bench/fast_quality.py scores the snapshots
on the held-out photos.  Prints one line a minute; writes <out>/log.jsonl.

    python -m bench.train_curve --style udnie --out bench/out/curve-udnie --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import COLLECTION, HELD_OUT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=180.0, help="stop after this much training")
    ap.add_argument("--marks", default="5,15,30,60,90,120,150,180",
                    help="minutes of training at which the network is kept")
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                    help="a setting override (YAML value), e.g. train_size=128")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--noise", type=int, help="noise channels of the network (default: the "
                    "preset's network_noise)")
    ap.add_argument("--start", type=Path, help="a trained network (of another style) to "
                    "start from instead of random weights: fine-tuning")
    ap.add_argument("--with-held-out", action="store_true",
                    help="train on the held-out photos too: a diagnostic of how much of the "
                    "gap on them is the photos' own difficulty (never for a judged network)")
    ap.add_argument("--crop", type=float,
                    help="see each photo through a random window of at least this fraction "
                    "of its area (default: TrainOptions.crop's; 1: whole)")
    ap.add_argument("--steps", type=int, default=10**9, help="stop after this many steps")
    args = ap.parse_args()

    import torch
    import yaml
    from PIL import Image

    from pipeline.config.styles import Registry
    from pipeline.engine.network import NetworkConfig
    from pipeline.engine.network_file import write_network
    from pipeline.engine.training import Trainer, TrainOptions, training_sides
    from pipeline.render.targets import StyleTargetStore
    from pipeline.store.cache import ArtifactCache

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    preset = Registry.discover().resolve(args.style).with_overrides(overrides)
    s = preset.settings
    paths = [p for p in sorted(COLLECTION.glob("*.jpg"))
             if args.with_held_out or p.name not in HELD_OUT]
    photos = [Image.open(p).convert("RGB") for p in paths]
    options = TrainOptions(side=s.train_size, batch=s.train_batch, steps=args.steps,
                           learning_rate=s.train_learning_rate, seed=s.seed,
                           crop=TrainOptions.crop if args.crop is None else args.crop,
                           config=NetworkConfig(width=s.network_width,
                                                noise=s.network_noise if args.noise is None
                                                else args.noise))
    targets = StyleTargetStore(ArtifactCache()).get(s, preset, training_sides(s, options))
    trainer = Trainer(s, targets, photos, options)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt, log_path = args.out / "checkpoint.safetensors", args.out / "log.jsonl"
    trained_s = 0.0
    if args.start and not ckpt.exists():
        from pipeline.engine.network_file import read_network

        start = read_network(args.start, options.config).net.state_dict()
        trainer.learner.load_state_dict(start)
        trainer.net.load_state_dict(start)
    if ckpt.exists():
        trainer.resume(ckpt)
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        trained_s = json.loads(lines[-1])["trained_s"] if lines else 0.0
    marks = sorted(float(m) for m in args.marks.split(","))
    (args.out / "settings.json").write_text(json.dumps(
        {"style": args.style, "overrides": overrides, "photos": len(photos),
         "start": str(args.start) if args.start else None,
         "held_out": () if args.with_held_out else HELD_OUT, "crop": options.crop,
         "threads": torch.get_num_threads()}, indent=1))
    last_ckpt = last_log = time.perf_counter()
    losses: list[float] = []
    while trained_s < args.minutes * 60 and trainer.step < args.steps:
        t0 = time.perf_counter()
        losses.append(trainer.train_step())
        step_s = time.perf_counter() - t0
        before, trained_s = trained_s, trained_s + step_s
        for mark in marks:
            if before < mark * 60 <= trained_s:
                write_network(args.out / f"net-{int(mark):03d}min.safetensors", trainer.net)
                (args.out / f"net-{int(mark):03d}min.json").write_text(json.dumps(
                    {"step": trainer.step, "trained_s": round(trained_s, 1)}))
        now = time.perf_counter()
        if now - last_log >= 60:
            entry = {"step": trainer.step, "trained_s": round(trained_s, 1),
                     "loss": round(sum(losses) / len(losses), 4),
                     "s_per_step": round(step_s, 3)}
            with log_path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            print(json.dumps(entry), flush=True)
            losses, last_log = [], now
        if now - last_ckpt >= 180:
            trainer.save_checkpoint(ckpt)
            last_ckpt = now
    trainer.save_checkpoint(ckpt)
    if trainer.step >= args.steps:  # a run to a step budget: its last network
        write_network(args.out / f"net-{args.steps}steps.safetensors", trainer.net)
        (args.out / f"net-{args.steps}steps.json").write_text(json.dumps(
            {"step": trainer.step, "trained_s": round(trained_s, 1)}))


if __name__ == "__main__":
    main()
