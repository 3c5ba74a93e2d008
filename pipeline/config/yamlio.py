"""Reading the YAML a user hands us (manifests, presets) with every cost bounded.

A manifest is a small text file, but the path given for it can be anything and YAML
can say a lot in a few bytes.  Before these bounds, ``stylize run /dev/zero`` grew to
24 GB, a FIFO blocked forever in ``open``, a 560-byte alias bomb ("billion laughs")
took 53 s and 6.4 GB, and 50 MB of keys took 7.5 GB.  So, in this order:

1. **Only a regular file is opened**, and opening never waits, and
2. **at most** :data:`MAX_YAML_BYTES` **are read**, whatever the file claims its size is:
   both are :func:`pipeline.store.fsread.read_bounded`, the reader of every planted file.
3. **The document is bounded before anything is built from it**: one pass over the
   parser's events counts the nodes the document holds *with every alias expanded*
   (:data:`MAX_YAML_NODES`) and its nesting depth, aliases included
   (:data:`MAX_YAML_DEPTH`); an alias inside the node it names (a cycle) is refused.
   Everything downstream (the line map, pydantic) walks the data as a tree, so the
   expanded size is the one that costs memory and time.  The pass streams events from
   libyaml and keeps only a small table per anchor, so it needs no more memory than
   the text itself, and stops at the first limit passed.

Every refusal is one :class:`~pipeline.errors.ConfigError` line naming the file (and the
line, where there is one), raised within a fraction of a second.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from pipeline.errors import ConfigError
from pipeline.store import fsread

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "compose", "construct",
           "load", "read_text"]

#: The largest manifest or preset read.  A job takes a few hundred bytes, so this holds
#: thousands of jobs; a preset is under 1 KB.  Reading 1 MiB takes milliseconds, and
#: YAML dense enough to be slow at this size is stopped by the node limit first.
MAX_YAML_BYTES = 1 << 20

#: The most nodes (scalars, lists, mappings, keys included) a document may hold with its
#: aliases expanded.  A job with ten settings is about 25; this allows about 4000 jobs,
#: and reaching it takes libyaml about a tenth of a second.
MAX_YAML_NODES = 100_000

#: The deepest nesting allowed, aliases expanded.  A manifest needs 5 (jobs, a job,
#: style_layers, a value); recursive code that walks the data stays far from Python's
#: recursion limit.
MAX_YAML_DEPTH = 32

# libyaml parses several times faster than PyYAML's pure-Python parser (0.6 s against 4.8 s
# for 200 000 values here); both give the same events and nodes.
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or str(exc)


def read_text(path: Path, what: str = "manifest", *, limit: int = MAX_YAML_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``, never blocking, never over ``limit`` bytes.

    Read by :func:`pipeline.store.fsread.read_bounded`.  Raises ``FileNotFoundError`` as it
    is (callers word "not found" their own way) and a one-line :class:`ConfigError` for
    everything else.
    """
    path = Path(path)
    try:
        data = fsread.read_bounded(path, limit, f"a {what}")
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; the {what} must be a YAML file") from None
    except fsread.NotRegularFileError:
        raise ConfigError(f"{path}: is not a regular file (a pipe, socket or device); "
                          f"the {what} must be a YAML file") from None
    except fsread.FileTooLargeError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({_reason(exc)})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read the {what} (not UTF-8 text: byte "
                          f"{exc.start})") from None


class _Limit(Exception):
    """A document past one of the bounds; worded as a limit, not as bad YAML."""

    def __init__(self, problem: str, event: yaml.Event) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = event.start_mark


def _check_extent(text: str) -> None:
    """Raise ``_Limit`` if ``text`` expands past the node or depth limits (see the module doc).

    For each anchor, the size (nodes) and height of the node it names are remembered when
    that node ends; an alias then adds that size to the count and that height to the depth
    where it stands.  A node that is still open has no entry yet, so an alias to it is a
    cycle.
    """
    total = 0
    depth = 0
    peak = 0  # the deepest level reached inside the innermost open collection
    extent: dict[str, tuple[int, int]] = {}
    # per open collection: (anchor, total before it, the peak of its parent)
    stack: list[tuple[str | None, int, int]] = []
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            found = extent.get(event.anchor or "")
            if found is None:
                if any(anchor == event.anchor for anchor, _, _ in stack):
                    raise _Limit(f"the alias *{event.anchor} refers to a node that contains "
                                 "it", event)
                continue  # an undefined alias: the composer says so
            size, height = found
            reach = depth + height
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            size, reach = 1, depth + 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before, outer_peak = stack.pop()
            if anchor is not None:
                extent[anchor] = (total - before, peak - depth + 1)
            depth -= 1
            peak = max(outer_peak, peak)
            continue
        else:
            continue
        total += size
        if total > MAX_YAML_NODES:
            raise _Limit(f"more than {MAX_YAML_NODES} values with aliases expanded; "
                         "the document is too large (a YAML alias bomb?)", event)
        if reach > MAX_YAML_DEPTH:
            raise _Limit(f"nested more than {MAX_YAML_DEPTH} levels deep (aliases "
                         "expanded)", event)
        peak = max(peak, reach)
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append((event.anchor, total - 1, peak))
            depth += 1
            peak = depth
        elif isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
            extent[event.anchor] = (1, 1)


def _where(path: Path, exc: BaseException) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f"{path}:{mark.line + 1}" if mark is not None else str(path)


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    # A composer's problem ("second occurrence") says little without its context
    # ("found duplicate anchor ..."); a parser's context ("while parsing ...") adds little.
    if isinstance(exc, yaml.composer.ComposerError) and context:
        return f"{context}: {problem}"
    return str(problem)


def compose(path: Path, what: str = "manifest", *, text: str | None = None) -> yaml.Node | None:
    """The YAML node tree of ``path`` (``None`` for an empty document), every cost bounded.

    The tree keeps the source lines (``start_mark``) for error messages; build the data
    from it with :func:`construct`.  ``text`` skips reading when the caller has it.
    """
    path = Path(path)
    if text is None:
        text = read_text(path, what)
    try:
        _check_extent(text)
        node: yaml.Node | None = yaml.compose(text, Loader=_Loader)
    except _Limit as exc:
        raise ConfigError(f"{_where(path, exc)}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{_where(path, exc)}: not valid YAML: {_problem(exc)}") from None
    return node


def construct(node: yaml.Node | None, path: Path) -> Any:
    """The Python data of a node tree from :func:`compose` (safe tags only)."""
    if node is None:
        return None
    try:
        return SafeConstructor().construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{_where(path, exc)}: not valid YAML: {_problem(exc)}") from None
    except (ValueError, OverflowError) as exc:
        # A scalar that matches a tag's pattern but not its range: a date such as
        # 2024-13-45, or an integer past Python's digit limit (its advice is for coders).
        raise ConfigError(f"{path}: not valid YAML: {str(exc).split(';')[0]}") from None


def load(path: Path, what: str = "manifest") -> Any:
    """The data of the YAML file ``path``, read and built within the bounds above."""
    return construct(compose(path, what), Path(path))
