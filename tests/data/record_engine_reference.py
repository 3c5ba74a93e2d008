"""Record the engine's reference pictures and losses anew (tests/test_reference_pictures.py).

Run it only after a deliberate change of the engine's pictures, on one thread, and say in
the commit why the pictures changed: it rewrites the digests, the first steps' losses, the
machine kind they hold for and the pictures under ``tests/data/reference/``.

    python tests/data/record_engine_reference.py            # record everything
    python tests/data/record_engine_reference.py --check    # only the losses and pictures,
                                                            # the digests must stay
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]


def main() -> None:
    torch.set_num_threads(1)
    import test_reference_pictures as ref

    keep_digests = "--check" in sys.argv
    data = json.loads((HERE / "engine_reference.json").read_text())
    data["machine"] = ref.float_signature(torch.device("cpu"))
    data["torch"] = torch.__version__.split("+")[0]
    data.setdefault("losses", {})
    for case in ref.ALL_CASES:
        pictures, losses = ref.render(case)
        digests = [ref.digest(p) for p in pictures]
        if keep_digests and digests != ref.recorded_digests(case):
            raise SystemExit(f"{case}: the picture is not the recorded one; not recording")
        value: str | list[str] = digests if len(digests) > 1 else digests[0]
        if case.startswith("before_"):
            data["before_options"][case.removeprefix("before_")] = value
        else:
            data["pictures"][case] = value
        data["losses"][case] = {"all": losses}
        names = ([f"{case}.png"] if len(pictures) == 1
                 else [f"{case}-{i}.png" for i in range(len(pictures))])
        for name, picture in zip(names, pictures, strict=True):
            picture.save(HERE / "reference" / name, optimize=True)
        print(f"{case}: {len(losses)} steps", flush=True)
    (HERE / "engine_reference.json").write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
