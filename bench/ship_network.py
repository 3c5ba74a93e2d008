"""Ship a network trained by bench/train_curve.py in its preset's folder (network.safetensors).

The network must have been trained with the very settings the preset now gives (the
curve's ``--set`` overrides written into the preset first): its key is computed from the
shipped preset, and a network trained otherwise is refused.  The file records what it was
trained on (the shared collection less the held-out photos), for how many steps and how
long, on what device and when, so that ``stylize styles show NAME`` can say so.

    python -m bench.ship_network --style udnie --network bench/out/ship-udnie/net-020min.safetensors
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", required=True)
    ap.add_argument("--network", type=Path, required=True,
                    help="a snapshot written by bench/train_curve.py")
    args = ap.parse_args()

    import safetensors
    import torch

    from pipeline.config.styles import Registry
    from pipeline.engine.device import float_signature
    from pipeline.engine.network_file import read_network, write_network
    from pipeline.render.network_loader import network_config
    from pipeline.training.networks import (
        META_DIGEST,
        META_KEY,
        META_STYLE,
        PRESET_NETWORK_FILE,
        network_key,
    )

    curve = args.network.parent
    trained = json.loads((curve / "settings.json").read_text())
    if trained["style"] != args.style:
        raise SystemExit(f"{args.network} is a network of {trained['style']}")
    preset = Registry.discover().resolve(args.style)
    if preset.source == "image" or not str(preset.path).startswith(str(REPO / "styles")):
        raise SystemExit(f"{args.style} is not one of the shipped presets")
    as_trained = preset.with_overrides(trained["overrides"])
    if network_key(as_trained) != network_key(preset):
        raise SystemExit(f"the network was trained with {trained['overrides']}, which the "
                         f"preset does not give; write them into {preset.path} first")
    loaded = read_network(args.network, network_config(preset.settings))
    at = json.loads(args.network.with_suffix(".json").read_text())  # train_curve's mark
    s = preset.settings
    training = {
        "photos": trained["photos"], "held_out": list(trained["held_out"]),
        "collection": "shared/data/collection (public-domain and free photos; "
                      "credits in its SOURCES.md)",
        "steps": at["step"], "minutes": round(at["trained_s"] / 60, 1),
        "size": s.train_size, "batch": s.train_batch,
        "learning_rate": s.train_learning_rate, "seed": s.seed, "width": s.network_width,
        "noise": s.network_noise, "network_style_ratio": s.network_style_ratio,
        # Fine-tuned from another preset's network (its curve folder and snapshot), or
        # trained from random weights (None).
        "start": (f"{Path(trained['start']).parent.name}/{Path(trained['start']).stem}"
                  if trained.get("start") else None),
        # Photos seen through random windows of at least this fraction of their area.
        "crop": trained.get("crop", 1.0),
        "device": float_signature(torch.device("cpu")).replace(
            f"{torch.get_num_threads()} thread", f"{trained['threads']} thread"),
        "cpu": platform.processor() or platform.machine(),
        "finished": datetime.fromtimestamp(args.network.stat().st_mtime,
                                           UTC).isoformat(timespec="seconds")}
    target = Path(preset.path).parent / PRESET_NETWORK_FILE
    if trained.get("start") and Path(trained["start"]).resolve() == target.resolve():
        # Trained on from the network shipped now: keep that one's record as its history.
        with safetensors.safe_open(str(target), "pt") as shipped:
            training["continued_from"] = json.loads(shipped.metadata()["training"])
    metadata = {META_KEY: network_key(preset), META_DIGEST: loaded.digest,
                META_STYLE: preset.name, "training": json.dumps(training, sort_keys=True)}
    digest = write_network(target, loaded.net, metadata)
    assert digest == loaded.digest
    print(f"{target}: network {digest[:12]}, {at['step']} steps, "
          f"{target.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
