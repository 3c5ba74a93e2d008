"""Every rule about names, in one place and without torch.

Which file names are photos, which are litter or still being written, what the
tool's own files and folders are called, how an output is named, and the one
sanitizer for any text (a file name, a message) shown to a person or written to
a log.  The planner, the watcher, the gallery and the displays all ask here, so
that two of them can never disagree about a name.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# -- what the tool writes ---------------------------------------------------------------

#: Folder beside the outputs that holds their done-records.
RECORD_DIR = ".stylize"
#: Temporary files start with this, so they are hidden and easy to sweep.
TEMP_PREFIX = ".stylize-tmp-"
#: A watched inbox's own folders and files.
DONE_DIR = "done"
FAILED_DIR = "failed"
ERROR_SUFFIX = ".error.json"
INBOX_REGISTRY_NAME = ".stylize-watch.json"
INBOX_LOCK_NAME = ".stylize-watch.lock"

# -- what the tool reads -----------------------------------------------------------------

#: Names a photo must have to be picked up (case-insensitive).
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif",
                            ".heic", ".heif", ".avif", ".mpo"})
#: Videos among the inputs (decoded by FFmpeg, through PyAV).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm"})
INPUT_SUFFIXES = PHOTO_SUFFIXES | VIDEO_SUFFIXES
#: Names that download managers and sync tools give a file while it is being written.
PARTIAL_SUFFIXES = frozenset({".part", ".partial", ".crdownload", ".download", ".tmp",
                              ".temp", ".filepart", ".!qb", ".opdownload"})
#: OS and NAS litter, matched on the whole name, file or folder.
LITTER_NAMES = frozenset({"Thumbs.db", "ehthumbs.db", "desktop.ini", "Icon\r", "@eaDir",
                          "#recycle", "$RECYCLE.BIN", "lost+found", "__MACOSX"})


def is_litter(name: str) -> bool:
    """Hidden files, editor backups, Office locks and OS/NAS litter: never photos.

    Hidden names cover rsync's ``.name.XXXXXX``, Syncthing's ``.syncthing.*.tmp``,
    AppleDouble ``._*``, Emacs locks ``.#*``, ``.DS_Store`` and the tool's own files.
    """
    return name.startswith((".", "~$")) or name.endswith("~") or name in LITTER_NAMES


def is_partial(name: str) -> bool:
    """A file that another program is still writing, by its name."""
    lower = name.lower()
    return lower.startswith("~syncthing~") or os.path.splitext(lower)[1] in PARTIAL_SUFFIXES


def is_photo_name(name: str) -> bool:
    """Whether a name is an input's (a photo's or a video's)."""
    return os.path.splitext(name)[1].lower() in INPUT_SUFFIXES


def is_video_name(name: str | Path) -> bool:
    return os.path.splitext(os.fsdecode(name))[1].lower() in VIDEO_SUFFIXES


def classify_name(name: str) -> str:
    """``candidate``, ``temporary`` (still being written), ``litter`` or ``other``."""
    if is_litter(name):
        return "litter"
    if is_partial(name):
        return "temporary"
    return "candidate" if is_photo_name(name) else "other"


# -- outputs -----------------------------------------------------------------------------

#: File suffix written for each ``format`` setting.
OUTPUT_SUFFIXES = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "tiff": ".tif",
                   "mp4": ".mp4", "mkv": ".mkv"}
#: A video's output container: its own family (ISO/QuickTime, or Matroska/WebM).
VIDEO_FORMATS = frozenset({"mp4", "mkv"})
_FORMAT_OF_SUFFIX = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp",
                     ".tif": "tiff", ".tiff": "tiff"}


def format_of_path(path: Path | str) -> str | None:
    """The output format a file name asks for, or None for an unknown suffix."""
    return _FORMAT_OF_SUFFIX.get(os.path.splitext(os.fsdecode(path))[1].lower())


def output_format(setting: str, input_path: Path) -> str:
    """The format to write: the setting, or for ``same`` the input's when writable; a
    video's is the container family of its own (the photo format setting is not read)."""
    if is_video_name(input_path):
        return "mkv" if os.path.splitext(input_path)[1].lower() in (".mkv", ".webm") else "mp4"
    if setting != "same":
        return setting
    return format_of_path(input_path) or "png"


def output_name(photo_name: str, style: str, fmt: str) -> str:
    """``<photo name>.<style><suffix>``: the photo's full name is kept, so ``a.jpg`` and
    ``a.png`` never collide, and the style is in the name, so styles never collide."""
    return f"{photo_name}.{style}{OUTPUT_SUFFIXES[fmt]}"


#: The longest path (in bytes, without its final NUL) and file name Linux takes: a longer
#: one fails with ENAMETOOLONG wherever it is used, so it is refused before any work.
PATH_MAX = 4095
NAME_MAX = 255


def output_too_long(output: Path) -> str | None:
    """Why ``output`` (with its record beside it) cannot be written, or None.

    The record's name is the output's plus ``.json``, in a folder one level down, so an
    output whose own name just fits would be written and its record then refused: the
    photo would be done again by every run.  Checking both up front spares that.
    """
    record = output.parent / RECORD_DIR / f"{output.name}.json"
    longest = max(len(os.fsencode(part)) for part in record.parts)
    if longest > NAME_MAX:
        return os.strerror(errno.ENAMETOOLONG)  # "File name too long"
    length = len(os.fsencode(os.path.abspath(record)))
    if length > PATH_MAX:
        return f"its path would be {length} bytes long; the system takes at most {PATH_MAX}"
    return None


# -- text for people ---------------------------------------------------------------------


def safe_text(text: str | os.PathLike[str]) -> str:
    """Text (a path, a message) that can appear in one line of UTF-8 output.

    Undecodable bytes (surrogate escapes from ``os.fsdecode``) come out as ``\\xNN``
    and control characters (ESC, CR, LF, DEL, C1 controls, bidi overrides) as
    escapes, so a hostile or merely odd file name can neither break the encoding of
    a log line, nor split it in two, nor send a terminal an escape sequence.
    """
    text = os.fsdecode(text)
    try:
        # Recover the original bytes, then show whatever is not UTF-8 as \xNN.
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        # Lone surrogates that did not come from surrogateescape.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def display_name(path: Path | str) -> str:
    """The file's name (not its folder) as it can safely appear in a one-line message."""
    text = os.fsdecode(path)
    return safe_text(os.path.basename(text.rstrip("/" + os.sep)) or text)


def json_bytes(obj: object, *, indent: int | None = 1) -> bytes:
    """UTF-8 JSON of ``obj`` that is valid whatever file names it holds.

    A file name with bytes that are not UTF-8 holds lone surrogates (``os.fsdecode``);
    ``backslashreplace`` writes them as JSON ``\\udcXX`` escapes, which ``json.loads``
    turns back into the same str: the file stays valid UTF-8 and round-trips.
    """
    import json

    return json.dumps(obj, indent=indent, ensure_ascii=False).encode("utf-8", "backslashreplace")
