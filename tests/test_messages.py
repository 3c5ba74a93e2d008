"""Text a user did not write (paths, names, messages) reaches the terminal through the one
sanitizer and is never read as Rich markup (issue 22, item 11).

Before: a path holding ``[/]`` made ``stylize image`` write its result and record and then
die with ``MarkupError`` (exit 1), and the same in ``run``, ``explain``, ``gallery`` and
``styles show``; ``[bold]`` in a name vanished from the message; raw ESC bytes of a photo
or manifest name reached the terminal in error lines.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from rich.console import Console
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.common import _SafeFormatter, say

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_thread")]
runner = CliRunner()

ESC = "\x1b"
TITLE = "x\x1b]0;PWN\x1b\\"  # an OSC sequence that retitles a terminal
QUICK = ["--size", "32", "--steps", "2", "--set", "min_side=16", "--device", "cpu",
         "--precision", "fp32"]


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                      SystemExit), result.exception
    return result.exit_code, result.stderr


def test_say_shows_markup_and_control_characters_as_they_are_written() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, markup=False, width=200)
    say(console, f"a[/]b [bold]c{ESC}[2J", label="error:", style="bold red")
    text = buffer.getvalue()
    assert "a[/]b [bold]c\\x1b[2J" in text
    assert f"{ESC}[2J" not in text  # the style of the label is the only escape sequence


def test_log_lines_go_through_the_sanitizer() -> None:
    record = logging.LogRecord("pipeline.x", logging.WARNING, __file__, 1,
                               "discarding %s", (f"entry{ESC}]0;PWN\a",), None)
    line = _SafeFormatter("%(levelname)s: %(message)s").format(record)
    assert line == "WARNING: discarding entry\\x1b]0;PWN\\x07"


def test_image_with_markup_in_its_paths_writes_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "a[").mkdir()
    photo = tmp_path / "a[" / "]b[bold]c.png"  # the path holds "[/]"
    gradient_photo(48, 32).save(photo)
    (tmp_path / "o[").mkdir()
    output = tmp_path / "o[" / "]ut[bold].jpg"
    code, err = _invoke("image", str(photo), "--style", "udnie", "-o", str(output), *QUICK)
    assert code == 0, err
    assert output.is_file()
    assert f"wrote {output} (32×21, style udnie" in err


def test_a_missing_photo_named_with_escape_sequences_is_one_safe_line(tmp_path: Path) -> None:
    code, err = _invoke("image", str(tmp_path / f"{TITLE}[/].jpg"), "--style", "udnie")
    assert code == 2
    assert ESC not in err
    assert err.splitlines() == [f"error: photo not found: {tmp_path}/x\\x1b]0;PWN\\x1b\\[/].jpg"]


def test_run_with_a_manifest_named_with_escapes_and_markup(tmp_path: Path) -> None:
    code, err = _invoke("run", str(tmp_path / f"j{ESC}[31m[/][bold].yaml"))
    assert code == 2
    assert err.splitlines() == [f"error: manifest not found: {tmp_path}/j\\x1b[31m[/][bold].yaml"]


def test_manifest_problems_show_the_input_path_safely(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.yaml"
    # (No "[" in it: that would make the input a glob.)
    manifest.write_text('jobs:\n  - {name: a, input: "ph\\e]0;PWN\\a/o", styles: [udnie], '
                        "output: out}\n")
    code, err = _invoke("run", str(manifest), "--dry-run")
    assert code == 2
    assert ESC not in err and "\a" not in err
    assert f"input folder not found: {tmp_path}/ph\\x1b]0;PWN\\x07/o" in err


def test_explain_of_a_picture_with_markup_in_its_path(tmp_path: Path) -> None:
    (tmp_path / "a[").mkdir()
    code, err = _invoke("explain", str(tmp_path / "a[" / "]x[bold].jpg"))
    assert code == 2
    assert err.startswith(f"error: {tmp_path}/a[/]x[bold].jpg has no record")


def test_styles_show_and_list_never_read_names_as_markup(tmp_path: Path) -> None:
    code, err = _invoke("styles", "show", "[/][bold]")
    assert code == 2
    assert "[/][bold]" in err

    folder = tmp_path / "styles" / "odd"
    folder.mkdir(parents=True)
    gradient_photo(40, 40).save(folder / "p.png")
    (folder / "preset.yaml").write_text('description: "a [/] b [bold]c \\e[2J"\n'
                                        "images: [p.png]\n")
    result = runner.invoke(app, ["styles", "list"],
                           env={"STYLIZE_STYLES_PATH": str(tmp_path / "styles"), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # The table may wrap the description (the network column is wide): each piece is
    # shown as written, none read as markup, and no ESC reaches the terminal.
    for piece in ("a [/] b", "[bold]c", "\\x1b[2J"):
        assert piece in result.stdout, result.stdout
    assert ESC not in result.stdout


def test_gallery_warnings_keep_markup_like_names(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    gradient_photo(48, 32).save(tmp_path / "photos" / "ok.png")
    # A file that does not load: the gallery warns, naming it.
    (tmp_path / "photos" / "[bold]notes.png").write_text("not a picture")
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("jobs:\n  - {name: a, input: photos, styles: [udnie], output: out}\n")
    code, err = _invoke("gallery", str(manifest))
    assert code == 0, err
    assert "warning: cannot show [bold]notes.png: " in err
