"""``jobs.yaml``: what a valid manifest resolves to, and every mistake reported with its line.

A bad manifest must stop ``stylize run`` with status 2 before anything is touched: no output
folder, no lock, no cache entry.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import yamlio
from pipeline.config.manifest import load_manifest
from pipeline.config.settings import Settings
from pipeline.errors import ConfigError, UsageError
from pipeline.plan.planning import discover_inputs, plan

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


def _project(tmp_path: Path) -> Path:
    """A project folder: photos (one subfolder), a painting, no outputs yet."""
    root = tmp_path / "project"
    (root / "photos" / "sub" / "deeper").mkdir(parents=True)
    (root / "phone" / "2024").mkdir(parents=True)
    (root / "paintings").mkdir()
    for i, rel in enumerate(["photos/a.jpg", "photos/sub/b.jpg", "photos/sub/deeper/c.png",
                             "phone/top.jpg", "phone/2024/x.jpg", "phone/2024/y.png"]):
        gradient_photo(48, 32, seed=i).save(root / rel)
    gradient_photo(40, 40, seed=9).save(root / "paintings" / "mine.jpg")
    return root


def _write(root: Path, text: str) -> Path:
    path = root / "jobs.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _line(path: Path, needle: str, nth: int = 0) -> int:
    """1-based number of the nth line of ``path`` containing ``needle``."""
    hits = [i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text]
    return hits[nth]


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert info.value.problems, info.value.message
    assert info.value.problems[0] == info.value.message
    return info.value.problems[1:]


def _run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env or {})
    return result.exit_code, result.stdout, result.stderr


# -- a valid manifest ---------------------------------------------------------------------


def test_full_manifest_resolves_paths_defaults_and_overrides(
        tmp_path: Path, fast_preset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        # every key of the schema
        styles_path: [../user-styles]
        defaults:
          size: 48
          steps: [4, 2]
          style_weight: 20
        jobs:
          - name: holiday
            input: photos
            recursive: true
            styles: [fast, starry-night]
            output: out/holiday
            inbox: inbox/holiday
            after: delete
            size: 56
            seed: 7
          - name: phone_2
            input: "phone/**/*.jpg"
            styles: [paintings/mine.jpg]
            output: out/phone
            follow_symlinks: true
            format: png
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths follow the manifest, not the cwd

    manifest = load_manifest(Path("..") / "project" / "jobs.yaml")
    assert manifest.path == path.resolve()
    holiday, phone = manifest.jobs
    assert (holiday.name, holiday.index, phone.name, phone.index) == ("holiday", 0, "phone_2", 1)
    assert manifest.job("phone_2") is phone
    with pytest.raises(UsageError, match="no job named 'nope'.*jobs: holiday, phone_2"):
        manifest.job("nope")

    # Paths: absolute, against the manifest's folder.
    assert holiday.input == root / "photos" and holiday.pattern is None and holiday.recursive
    assert holiday.output == root / "out" / "holiday"
    assert holiday.inbox == root / "inbox" / "holiday" and holiday.after == "delete"
    assert not holiday.follow_symlinks
    assert phone.input == root / "phone" and phone.pattern == "**/*.jpg"
    assert phone.output == root / "out" / "phone" and phone.inbox is None
    assert phone.after == "move" and phone.follow_symlinks and not phone.recursive

    # Styles: a user preset found through styles_path, a builtin, a painting by path.
    fast, starry = holiday.styles
    assert (fast.name, fast.source) == ("fast", "user")
    assert fast.images[0].path == fast_preset_dir / "fast" / "paint.png"
    assert (starry.name, starry.source) == ("starry-night", "builtin")
    (mine,) = phone.styles
    assert (mine.name, mine.source) == ("mine", "image")
    assert mine.images[0].path == root / "paintings" / "mine.jpg"

    # Layering: built-in < preset < defaults < job.
    assert fast.settings.size == 56 and fast.settings.seed == 7  # the job's overrides
    assert fast.settings.steps == [4, 2] and fast.settings.style_weight == 20  # defaults
    assert fast.settings.min_side == 32 and fast.settings.device == "cpu"  # the preset's own
    assert starry.settings.size == 56 and starry.settings.style_weight == 20
    assert mine.settings.format == "png" and mine.settings.size == 48
    assert mine.settings.seed == Settings().seed  # another job's override does not leak

    # Inputs: the glob descends; the recursive folder mirrors subfolders.
    assert [p.relative_to(root) for p in discover_inputs(phone)] == [
        Path("phone/2024/x.jpg"), Path("phone/top.jpg")]
    assert [p.relative_to(root) for p in discover_inputs(holiday)] == [
        Path("photos/a.jpg"), Path("photos/sub/b.jpg"), Path("photos/sub/deeper/c.png")]


@pytest.fixture
def plugin_site(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution 'fancy-styles' registering presets 'fancy' and 'mine'."""
    site = tmp_path / "site"
    for name in ("fancy", "mine"):
        folder = site / "fancy_styles" / "presets" / name
        folder.mkdir(parents=True)
        gradient_photo(32, 32, seed=4).save(folder / "p.png")
        (folder / "preset.yaml").write_text(
            "images: [p.png]\nsettings: {style_weight: 42, tv_weight: 3, size: 300}\n")
    (site / "fancy_styles" / "__init__.py").write_text(
        "from pathlib import Path\nPRESETS = Path(__file__).parent / 'presets'\n")
    dist = site / "fancy_styles-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-styles\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[stylize.styles]\nfancy = fancy_styles:PRESETS\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("fancy_styles", None)
        importlib.invalidate_caches()


def test_plugin_presets_in_a_manifest(tmp_path: Path, plugin_site: Path) -> None:
    root = _project(tmp_path)
    (root / "my-styles" / "mine").mkdir(parents=True)
    gradient_photo(32, 32, seed=5).save(root / "my-styles" / "mine" / "q.png")
    (root / "my-styles" / "mine" / "preset.yaml").write_text("images: [q.png]\n")
    path = _write(root, """
        styles_path: [my-styles]
        defaults: {tv_weight: 1}
        jobs:
          - {name: a, input: photos, styles: [fancy, mine], output: out, size: 64}
    """)
    fancy, mine = load_manifest(path).jobs[0].styles
    assert fancy.source == "plugin:fancy-styles"
    assert fancy.images[0].path == plugin_site / "fancy_styles" / "presets" / "fancy" / "p.png"
    # plugin preset < manifest defaults < job
    assert (fancy.settings.style_weight, fancy.settings.tv_weight, fancy.settings.size) == (
        42, 1, 64)
    # A user folder named in the manifest overrides the plugin's preset of the same name.
    assert (mine.source, mine.overrides) == ("user", "plugin:fancy-styles")
    assert mine.images[0].path == root / "my-styles" / "mine" / "q.png"
    assert mine.settings.style_weight == Settings().style_weight


def test_command_line_overrides_come_last(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        defaults: {device: cpu, size: 48}
        jobs:
          - {name: a, input: photos, styles: [udnie], output: out, device: cpu}
    """)
    (preset,) = load_manifest(path, cli_overrides={"device": "auto"}).jobs[0].styles
    assert preset.settings.device == "auto" and preset.settings.size == 48


def test_non_recursive_folder_takes_only_its_own_photos(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "photos" / "notes.txt").write_text("not a photo")
    (root / "photos" / ".hidden.jpg").write_bytes(b"")
    path = _write(root, """
        jobs:
          - {name: a, input: photos, styles: [udnie], output: out}
    """)
    assert discover_inputs(load_manifest(path).jobs[0]) == [root / "photos" / "a.jpg"]


def test_shipped_jobs_yaml_is_valid() -> None:
    manifest = load_manifest(Path(__file__).resolve().parent.parent / "jobs.yaml")
    assert [j.name for j in manifest.jobs] == ["samples", "samples-fast", "samples-video"]
    # The fast jobs use the presets' shipped networks: nothing to train first.
    fast, video = manifest.jobs[1:]
    assert {p.settings.method for p in fast.styles} == {"fast"} and len(fast.styles) == 4
    assert {p.settings.method for p in video.styles} == {"fast"}
    assert [p.name for p in discover_inputs(video)] == ["chelsea-pan.mp4"]


# -- mistakes, each with file and line ------------------------------------------------------


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - name: a
            input: photos
            styles: [udnie]
            output: out
            stlye_weight: 30
    """)
    assert _problems(path) == [f"{path}:{_line(path, 'stlye_weight')}: "
                               "jobs[0].stlye_weight: unknown key"]


def test_unknown_style_names_the_list_item_and_the_known_ones(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - name: a
            input: photos
            styles: [udnie]
            output: out/a
          - name: b
            input: photos
            styles:
              - stary-night
              - great-wave
            output: out/b
    """)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:{_line(path, 'stary-night')}: jobs[1].styles[0]: "
                              "unknown style 'stary-night'; known: great-wave, starry-night, ")


def _assert_problems(path: Path, expected: list[tuple[int, str]]) -> None:
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    count = len(expected)
    assert info.value.message == f"{path}: {count} problems; nothing was processed"
    lines = info.value.problems[1:]
    assert len(lines) == count, lines
    for line, text in expected:
        assert any(p.startswith(f"{path}:{line}: {text}") for p in lines), (text, lines)


def test_every_schema_problem_is_listed_at_once(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        defaults:
          size: 3
        jobs:
          - name: a
            input: photos
            styles: [udnie]
            output: out/a
            colour: red
          - name: b
            input: photos
            styles: [udnie]
            output: out/b
            steps: many
    """)
    _assert_problems(path, [
        (_line(path, "size: 3"), "defaults.size: Input should be greater than or equal to 16"),
        (_line(path, "colour"), "jobs[0].colour: unknown key"),
        (_line(path, "steps: many"), "jobs[1].steps: Input should be a valid list"),
    ])


def test_every_job_problem_is_listed_at_once(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - name: a
            input: nowhere
            styles: [stary-night, paintings/missing.jpg]
            output: out/a
          - name: a
            input: photos
            styles: [udnie]
            output: out/b
    """)
    _assert_problems(path, [
        (_line(path, "stary-night"), "jobs[0].styles[0]: unknown style 'stary-night'"),
        (_line(path, "stary-night"), "jobs[0].styles[1]: style image not found"),
        (_line(path, "input: nowhere"), "jobs[0].input: input folder not found"),
        (_line(path, "name: a", 1), "jobs[1].name: job name 'a' is used twice"),
    ])


@pytest.mark.parametrize("text,needle,message", [
    ("jobs:\n  - name: a\n    input: [photos\n    styles: [udnie]\n", "styles:",
     "not valid YAML"),
    ("jobs:\n  - name: a\n\tinput: photos\n", "input:", "not valid YAML"),
    ("jobs: []\n", "jobs", "jobs: List should have at least 1 item"),
    ("- a\n- b\n", "- a", "(top level): Input should be a valid dictionary"),
    ("jbos: []\njobs:\n  - {name: a, input: photos, styles: [udnie], output: o}\n", "jbos",
     "jbos: unknown key"),
    ("jobs:\n  - name: a b\n    input: photos\n    styles: [udnie]\n    output: o\n", "name",
     "jobs[0].name: use letters, digits"),
    ("jobs:\n  - name: a\n    input: photos\n    styles: udnie\n    output: o\n", "styles",
     "jobs[0].styles: Input should be a valid list"),
    ("jobs:\n  - name: a\n    input: photos\n    styles: [udnie]\n", "name",
     "jobs[0].output: Field required"),
    ("jobs:\n  - name: a\n    input: photos\n    styles: []\n    output: o\n", "styles",
     "jobs[0].styles: List should have at least 1 item"),
    ("jobs:\n  - name: a\n    input: photos\n    styles: [udnie]\n    output: o\n"
     "    after: keep\n", "after", "jobs[0].after: Input should be 'move' or 'delete'"),
    ("jobs:\n  - name: a\n    input: photos/*.jpg\n    recursive: true\n    styles: [udnie]\n"
     "    output: o\n", "recursive", "jobs[0].recursive: recursive applies to folders"),
    ("jobs:\n  - name: a\n    input: nowhere/**/*.jpg\n    styles: [udnie]\n    output: o\n",
     "input", "jobs[0].input: input folder not found"),
    ("jobs:\n  - name: a\n    input: photos/a.jpg\n    styles: [udnie]\n    output: o\n",
     "input", "jobs[0].input: not a folder"),
    ("jobs:\n  - name: a\n    input: photos\n    styles: [udnie]\n    output: o\n"
     "    output: p\n", "output: p", "jobs[0].output: duplicate key"),
    ("jobs:\n  - name: a\n    input: photos\n    styles: [udnie, great-wave, udnie]\n"
     "    output: o\n", "styles", "jobs[0].styles[2]: style 'udnie' is listed twice"),
    ("jobs:\n  - name: a\n    input: photos\n    styles: [udnie]\n    output: photos\n",
     "output", "jobs[0].output: the output folder is the input folder"),
])
def test_mistake_is_one_line_with_its_line_number(tmp_path: Path, text: str, needle: str,
                                                  message: str) -> None:
    root = _project(tmp_path)
    path = root / "jobs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    lines = info.value.problems[1:] or [info.value.message]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:{_line(path, needle)}: {message}"), lines


def test_two_jobs_writing_the_same_files_are_refused(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - {name: a, input: photos, styles: [udnie, great-wave], output: out}
          - {name: b, input: phone, styles: [great-wave], output: ./out/}
    """)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3: jobs[1].output: jobs 'a' and 'b' both write style "
                              "'great-wave' into ")


def test_same_folder_for_different_styles_is_allowed(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - {name: a, input: photos, styles: [udnie], output: out}
          - {name: b, input: photos, styles: [great-wave], output: out}
    """)
    the_plan = plan(load_manifest(path))
    assert len({t.output for t in the_plan.tasks}) == len(the_plan.tasks) == 2


def test_collision_found_only_at_planning_is_a_config_error(tmp_path: Path) -> None:
    root = _project(tmp_path)
    # b's output is a subfolder of a's, and a mirrors the subfolder 'sub' of its input.
    path = _write(root, """
        jobs:
          - {name: a, input: photos, recursive: true, styles: [udnie], output: out}
          - {name: b, input: photos/sub, styles: [udnie], output: out/sub}
    """)
    manifest = load_manifest(path)
    with pytest.raises(ConfigError, match="jobs 'a' and 'b' would both write .*b.jpg.udnie.jpg"):
        plan(manifest)
    # Run one at a time, they would overwrite each other's results on every run.
    for job in ("a", "b"):
        with pytest.raises(ConfigError, match="would both write .*b.jpg.udnie.jpg"):
            plan(manifest, jobs=[job])


# -- `stylize run` on a bad manifest: status 2, nothing touched -----------------------------


BAD_MANIFESTS = {
    "unknown key": ("jobs:\n  - name: a\n    input: photos\n    styles: [udnie]\n"
                    "    output: out\n    stlye_weight: 3\n", "jobs[0].stlye_weight: unknown key"),
    "unknown style": ("jobs:\n  - name: a\n    input: photos\n    styles: [udnie]\n"
                      "    output: out\n  - name: b\n    input: photos\n"
                      "    styles: [stary-night]\n    output: out2\n",
                      "jobs.yaml:8: jobs[1].styles[0]: unknown style 'stary-night'; known: "),
    "bad yaml": ("jobs:\n  - name: a\n    input: photos\n     styles: [udnie]\n",
                 "jobs.yaml:4: not valid YAML"),
    "missing input": ("jobs:\n  - name: a\n    input: fotos\n    styles: [udnie]\n"
                      "    output: out\n", "jobs.yaml:3: jobs[0].input: input folder not found"),
    "duplicate names": ("jobs:\n  - {name: a, input: photos, styles: [udnie], output: out}\n"
                        "  - {name: a, input: phone, styles: [udnie], output: out2}\n",
                        "jobs.yaml:3: jobs[1].name: job name 'a' is used twice"),
    "same output": ("jobs:\n  - {name: a, input: photos, styles: [udnie], output: out}\n"
                    "  - {name: b, input: phone, styles: [udnie], output: out}\n",
                    "jobs 'a' and 'b' both write style 'udnie' into"),
    "collision at planning": (
        "jobs:\n  - {name: a, input: photos, recursive: true, styles: [udnie], output: out}\n"
        "  - {name: b, input: photos/sub, styles: [udnie], output: out/sub}\n",
        "would both write"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_run_refuses_a_bad_manifest_and_touches_nothing(tmp_path: Path, case: str,
                                                        dry_run: bool) -> None:
    root = _project(tmp_path)
    text, message = BAD_MANIFESTS[case]
    path = root / "jobs.yaml"
    path.write_text(text)
    cache = tmp_path / "run-cache"
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    args = ["run", str(path), "--json", "--cache-dir", str(cache)] + (["--dry-run"] * dry_run)
    code, stdout, stderr = _run_cli(*args)
    assert code == 2, stderr
    assert message in stderr, stderr
    assert stderr.startswith("error: ") and "Traceback" not in stderr
    assert stdout == ""
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # no output folder
    # The lock and the cache are only touched once the manifest is known to be good, except
    # for a collision, which needs the photos to be listed (under the lock).
    if case != "collision at planning":
        assert not cache.exists()
    assert not list(cache.rglob("*.safetensors"))


def test_run_without_a_manifest_is_a_usage_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _run_cli("run")
    assert code == 2 and "manifest not found: jobs.yaml" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_run_with_an_unknown_job_is_a_usage_error(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - {name: a, input: photos, styles: [udnie], output: out}
    """)
    code, _, stderr = _run_cli("run", str(path), "--job", "b", "--dry-run")
    assert code == 2 and "no job named 'b'" in stderr and "jobs: a" in stderr
    assert not (root / "out").exists()


# -- hostile manifests: every read bounded, every refusal one line (issue 11) -------------


def _one_problem(path: Path) -> str:
    """The one line a refused manifest gives (its only problem, or its message)."""
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    lines = info.value.problems[1:] or [info.value.message]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_manifest_that_is_not_a_regular_file_is_refused_without_reading(
        tmp_path: Path, kind: str) -> None:
    # /dev/zero is in the subprocess test below and in tests/faults/test_unbounded.py, both
    # with a memory cap: read in this process by a regression, it would take the machine.
    path = tmp_path / "jobs.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # no writer: a blocking open would wait forever
    else:
        path.mkdir()
    started = time.monotonic()
    line = _one_problem(path)
    assert time.monotonic() - started < 1
    expected = "is a folder" if kind == "folder" else "is not a regular file (a pipe, socket"
    assert line.startswith(f"{path}: {expected}"), line


def test_manifest_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    with path.open("w") as fh:
        fh.write("jobs: []\n")
        fh.write("#" * yamlio.MAX_YAML_BYTES + "\n")
    assert _one_problem(path) == (f"{path}: too large for a manifest "
                                  f"({path.stat().st_size / 2**20:.1f} MiB; the limit is 1 MiB)")


def test_manifest_at_the_size_limit_is_read(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = root / "jobs.yaml"
    head = "jobs:\n  - {name: a, input: photos, styles: [udnie], output: out}\n"
    path.write_text(head + "#" * (yamlio.MAX_YAML_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == yamlio.MAX_YAML_BYTES
    assert [j.name for j in load_manifest(path).jobs] == ["a"]


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    rows = ["x0: &x0 [" + ", ".join(["lol"] * width) + "]"]
    rows += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * width) + "]"
             for i in range(1, levels)]
    return "\n".join(rows) + f"\njobs: *x{levels - 1}\n"


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_in_a_fraction_of_a_second(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(_alias_bomb())  # 9**9 nodes once expanded; it took 53 s and 6.4 GB
    started = time.monotonic()
    line = _one_problem(path)
    assert time.monotonic() - started < 1
    assert line.startswith(f"{path}:6: more than {yamlio.MAX_YAML_NODES} values with "
                           "aliases expanded"), line


@pytest.mark.parametrize("text,needle,message", [
    ("a: &a [1, *a]\njobs: *a\n", "a: &a", "the alias *a refers to a node that contains it"),
    ("jobs: " + "[" * 40 + "]" * 40 + "\n", "jobs", "nested more than 32 levels deep"),
    ("a: &a " + "[" * 20 + "1" + "]" * 20 + "\njobs: " + "[" * 20 + "*a" + "]" * 20 + "\n",
     "jobs:", "nested more than 32 levels deep (aliases expanded)"),
    ("jobs:\n  - name: a\n    when: 2024-13-45\n", None, "not valid YAML: month must be in"),
    ("jobs:\n  - name: a\n    size: " + "9" * 5000 + "\n", None,
     "not valid YAML: Exceeds the limit (4300 digits)"),
    ("jobs: *nowhere\n", "jobs", "not valid YAML: found undefined alias"),
])
def test_yaml_past_a_bound_is_one_line(tmp_path: Path, text: str, needle: str | None,
                                       message: str) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    where = f"{path}:{_line(path, needle)}" if needle else str(path)
    line = _one_problem(path)
    assert line.startswith(f"{where}: {message}"), line


def test_anchors_and_merge_keys_within_the_bounds_still_work(tmp_path: Path) -> None:
    root = _project(tmp_path)
    # Unknown top-level keys are refused, so the anchor is on the first job.
    path = _write(root, """
        jobs:
          - &first {name: a, input: photos, styles: [udnie], output: out/a, size: 40}
          - {<<: *first, name: b, output: out/b, size: 32}
    """)
    jobs = load_manifest(path).jobs
    assert [(j.name, j.styles[0].settings.size) for j in jobs] == [("a", 40), ("b", 32)]


def test_job_name_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - {name: "a\\n", input: photos, styles: [udnie], output: out}
    """)
    assert _one_problem(path).startswith(f"{path}:2: jobs[0].name: use letters, digits")


@pytest.mark.parametrize("field", ["input", "output", "inbox", "glob"])
def test_symlink_loop_as_a_folder_is_one_line_naming_the_field(tmp_path: Path,
                                                               field: str) -> None:
    root = _project(tmp_path)
    (root / "loop").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop")
    folders = {"input": "photos", "output": "out", "inbox": "inbox"}
    folders["input" if field == "glob" else field] = "loop/*.jpg" if field == "glob" else "loop"
    path = _write(root, f"""
        jobs:
          - name: a
            input: {folders["input"]}
            styles: [udnie]
            output: {folders["output"]}
            inbox: {folders["inbox"]}
    """)
    shown = "input" if field == "glob" else field
    line = _one_problem(path)
    assert line.startswith(f"{path}:{_line(path, shown + ':')}: jobs[0].{shown}: symbolic link "
                           f"loop: {root / 'loop'}"), line


def test_run_with_a_symlink_loop_as_output_is_status_2_and_one_line(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "out").symlink_to(root / "out")
    path = _write(root, """
        jobs:
          - {name: a, input: photos, styles: [udnie], output: out}
    """)
    code, stdout, stderr = _run_cli("run", str(path), "--cache-dir", str(tmp_path / "c"))
    assert code == 2, stderr
    assert "Traceback" not in stderr and "RuntimeError" not in stderr
    assert "jobs[0].output: symbolic link loop" in stderr, stderr


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "empty"])
def test_style_image_that_is_not_a_usable_file_is_refused_with_its_line(
        tmp_path: Path, kind: str) -> None:
    root = _project(tmp_path)
    painting = root / "paintings" / "odd.jpg"
    if kind == "fifo":
        os.mkfifo(painting)
        expected = "is not a regular file (a pipe, socket or device)"
    elif kind == "device":
        painting = Path("/dev/zero")
        expected = "is not a regular file (a pipe, socket or device)"
    elif kind == "loop":
        painting.symlink_to(painting)
        expected = "symbolic link loop"
    else:
        painting.touch()
        expected = "file is empty"
    path = _write(root, f"""
        jobs:
          - name: a
            input: photos
            styles: [udnie, {painting}]
            output: out
    """)
    line = _one_problem(path)
    assert line.startswith(f"{path}:{_line(path, 'styles')}: jobs[0].styles[1]: style image "
                           f"{painting}: {expected}"), line


def test_refusing_a_hostile_manifest_needs_no_torch(tmp_path: Path) -> None:
    """The checks run before torch is imported: a bad manifest fails in a fraction of a second."""
    root = _project(tmp_path)
    path = _write(root, """
        jobs:
          - {name: a, input: photos, styles: [/dev/zero], output: out}
    """)
    code = textwrap.dedent(f"""
        import resource, sys
        # Were /dev/zero read into memory, this ends it at 2 GB instead of taking the machine.
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from pipeline.errors import ConfigError
        from pipeline.config.manifest import load_manifest
        for manifest in ({str(path)!r}, "/dev/zero"):
            try:
                load_manifest(manifest)
            except ConfigError as exc:
                print(exc.problems[-1] if exc.problems else exc.message)
        assert "torch" not in sys.modules, "torch was imported"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "styles[0]: style image /dev/zero: is not a regular file" in done.stdout
    assert "/dev/zero: is not a regular file" in done.stdout.splitlines()[1]


def test_ray_workers_ask_for_no_gpu_when_every_style_is_on_the_cpu(tmp_path: Path) -> None:
    from pipeline.cli.common import gpus_per_worker

    root = _project(tmp_path)
    cpu = load_manifest(_write(root, """
        defaults: {device: cpu}
        jobs:
          - {name: a, input: photos, styles: [udnie], output: out/a}
          - {name: b, input: phone, styles: [starry-night], output: out/b, device: cpu}
    """))
    assert gpus_per_worker(cpu, "ray", None) == 0.0
    assert gpus_per_worker(cpu, "ray", 0.5) == 0.5  # what the user asked for wins
    assert gpus_per_worker(cpu, "local", None) is None
    # One style that may use a GPU: the executor's own default (one GPU where there are any).
    mixed = load_manifest(_write(root, """
        defaults: {device: cpu}
        jobs:
          - {name: a, input: photos, styles: [udnie], output: out/a}
          - {name: b, input: phone, styles: [starry-night], output: out/b, device: auto}
    """))
    assert gpus_per_worker(mixed, "ray", None) is None
    # --device cpu on the command line pins every style.
    pinned = load_manifest(root / "jobs.yaml", cli_overrides={"device": "cpu"})
    assert gpus_per_worker(pinned, "ray", None) == 0.0
