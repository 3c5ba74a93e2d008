"""``explain`` makes the picture again whatever the photo is called and wherever it is run
(issue 22, item 14).

Before: a newline in a photo name was printed as a literal ``\\n`` (pasted, the command said
"photo not found"); ``stylize image`` recorded the photo as typed, relative to the folder it
was run in, so ``explain`` run elsewhere said the photo was gone; ``./-ofoo.png`` was
recorded as ``-ofoo.png``, which the printed command passed as an option.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.review.provenance import shell_quote
from pipeline.store import records

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("one_thread")]
BASH_ENV = {**os.environ, "LC_ALL": "C.UTF-8"}


def _bash_words(line: str) -> list[str]:
    """The words bash makes of ``line`` (as ``os.fsdecode`` strings)."""
    done = subprocess.run(["bash", "-c", f"printf '%s\\0' {line}"], capture_output=True,
                          env=BASH_ENV, check=True, timeout=10)
    return [os.fsdecode(word) for word in done.stdout.split(b"\0")[:-1]]


# The names a file system allows (anything but NUL): controls, bidi overrides, bytes that
# are not UTF-8.
_NAMES = st.one_of(
    st.text(min_size=1, max_size=20),
    st.binary(min_size=1, max_size=20).map(os.fsdecode),
).filter(lambda name: "\0" not in name)


@settings(max_examples=60, deadline=None)
@given(st.lists(_NAMES, min_size=1, max_size=4))
def test_shell_quote_gives_back_exactly_the_words_and_nothing_to_hide(words: list[str]) -> None:
    line = " ".join(shell_quote(word) for word in words)
    assert line.isprintable()  # no ESC, no newline: safe to show, one line
    assert _bash_words(line) == words


@pytest.mark.parametrize("word", ["$(touch pwned)", "`touch pwned`", "a; touch pwned",
                                  "x\n$(touch pwned)", "it's"])
def test_shell_quote_runs_nothing(tmp_path: Path, word: str) -> None:
    subprocess.run(["bash", "-c", f"printf '%s' {shell_quote(word)} >/dev/null"],
                   cwd=tmp_path, env=BASH_ENV, check=True, timeout=10)
    assert not (tmp_path / "pwned").exists()


def _invoke(*args: str, styles: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"STYLIZE_STYLES_PATH": str(styles)})
    return result.exit_code, result.stdout, result.stderr


def _remake(output: Path, styles: Path) -> tuple[list[str], Path]:
    """The printed command, read by bash, and run: its words and the picture it made."""
    code, command, err = _invoke("explain", str(output), "--command", styles=styles)
    assert code == 0, err
    assert len(command.splitlines()) == 1
    argv = _bash_words(command.strip())
    assert argv[:2] == ["stylize", "image"]
    code, _, err = _invoke("image", "-q", *argv[2:], styles=styles)  # -q before any "--"
    assert code == 0, err
    return argv, Path(argv[argv.index("-o") + 1])


def test_a_newline_in_the_photo_name_survives_the_printed_command(
        tmp_path: Path, fast_preset_dir: Path) -> None:
    photo = tmp_path / "cat\nnight\x1b[31m.png"
    gradient_photo(64, 40, seed=3).save(photo)
    out = tmp_path / "made.png"
    code, _, err = _invoke("image", str(photo), "-s", "fast", "-o", str(out), "-q",
                           styles=fast_preset_dir)
    assert code == 0, err
    argv, again = _remake(out, fast_preset_dir)
    assert argv[2] == str(photo)
    assert again.read_bytes() == out.read_bytes()


def test_a_photo_given_relative_is_found_by_explain_run_elsewhere(
        tmp_path: Path, fast_preset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    gradient_photo(64, 40, seed=4).save(tmp_path / "here" / "p.png")
    monkeypatch.chdir(tmp_path / "here")
    code, _, err = _invoke("image", "p.png", "-s", "fast", "-o", "p.out.png", "-q",
                           styles=fast_preset_dir)
    assert code == 0, err
    out = tmp_path / "here" / "p.out.png"
    rec = records.read_record(out)
    assert rec is not None and rec.input == str(tmp_path / "here" / "p.png")

    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = _invoke("explain", str(out), styles=fast_preset_dir)
    assert code == 0 and "is gone" not in err, err
    argv, again = _remake(out, fast_preset_dir)
    assert again == tmp_path / "here" / "p.out.again.png"  # beside the output, absolute
    assert again.read_bytes() == out.read_bytes()


def test_a_photo_whose_name_begins_with_a_dash(tmp_path: Path, fast_preset_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    gradient_photo(64, 40, seed=5).save(tmp_path / "-ofoo.png")
    code, _, err = _invoke("image", "./-ofoo.png", "-s", "fast", "-o", "made.png", "-q",
                           styles=fast_preset_dir)
    assert code == 0, err
    out = tmp_path / "made.png"
    rec = records.read_record(out)
    assert rec is not None and rec.input == str(tmp_path / "-ofoo.png")

    # A record of an earlier version holds the name as typed: it goes after "--".
    records.write_record(out, dataclasses.replace(rec, input="-ofoo.png"))
    argv, again = _remake(out, fast_preset_dir)
    assert argv[-2:] == ["--", "-ofoo.png"]
    assert again.read_bytes() == out.read_bytes()
