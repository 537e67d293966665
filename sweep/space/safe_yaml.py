"""Reading a search space file as data: a regular file of at most MAX_FILE_BYTES, UTF-8 text, YAML that
PyYAML's safe loader reads without a key given twice, nesting deeper than MAX_DEPTH or aliases expanding
it past MAX_NODES nodes. Every problem is one SweepError naming the file (``sweep.space.load`` then
validates what the document says)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from sweep.errors import SweepError, quote

# Hostile files: the largest file read, the deepest nesting, and the most nodes a document may expand to
# (an alias repeats the whole node it names, so 400 bytes of nested aliases can expand to 10^9 nodes).
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 10_000
# what a path that is not a regular file is, for the one line that refuses it (reading a named pipe would
# wait for a writer forever; a device may never end)
_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_document(file: Path) -> Any:
    """The YAML document in ``file``, read as data: a SweepError naming the file for anything that is
    not a regular file (a folder, a named pipe, a device: refused without reading, so nothing blocks),
    is larger than MAX_FILE_BYTES, not UTF-8, not YAML, or refused by ``SpaceLoader``."""
    shown = str(file)
    raw = _read_regular(file, shown)
    if len(raw) > MAX_FILE_BYTES:
        raise SweepError(f"{shown}: larger than {MAX_FILE_BYTES} bytes; a search space is a small YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SweepError(
            f"{shown}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "a search space must be a UTF-8 YAML file"
        ) from None
    return load_text(text, shown)


def load_text(text: str, shown: str) -> Any:
    """``text`` parsed by ``SpaceLoader``; a SweepError naming ``shown`` (and the line) otherwise."""
    try:
        return yaml.load(text, Loader=SpaceLoader)
    except yaml.reader.ReaderError as err:
        raise SweepError(
            f"{shown}: not YAML text ({str(err).splitlines()[0]}); a search space must be a UTF-8 YAML file"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        what = "" if isinstance(err, Refused) else "malformed YAML: "
        raise SweepError(f"{shown}{line}: {what}{problem}") from None
    except (ValueError, OverflowError, TypeError) as err:  # a value its constructor refuses (5000 digits)
        raise SweepError(f"{shown}: malformed YAML: a value cannot be read ({quote(str(err))})") from None


def _read_regular(file: Path, shown: str) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes of ``file``, once it is known to be a regular file: opened without
    blocking (a named pipe with no writer would hold ``open`` forever) and checked on the open file, so a
    path swapped in between is checked too."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise SweepError(f"cannot read search space {shown}: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SweepError(f"cannot read search space {shown}: {os.strerror(errno.EISDIR)}")
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "a special file")
            raise SweepError(
                f"cannot read search space {shown}: {kind}, not a regular file; a search space is a YAML file"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise SweepError(f"cannot read search space {shown}: {err.strerror or err}") from None
    finally:
        os.close(fd)


class Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that no search space needs: nested too deep, expanding to too many nodes."""


class SpaceLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last), nesting
    deeper than MAX_DEPTH (PyYAML recurses per level), and documents whose aliases expand them past
    MAX_NODES nodes (a "billion laughs" file would build a structure too big to check or to print)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise Refused(
                    None, None, f"nested deeper than {MAX_DEPTH} levels; a search space needs a few", mark
                )
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self.depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()  # type: ignore[no-untyped-call]
        if node is not None:
            check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {quote(key)}", key_node.start_mark
                    )
                seen.add(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a key must be a plain value, not a {type(key).__name__}",
                    key_node.start_mark,
                ) from None
        return super().construct_mapping(node, deep=deep)


def check_expansion(root: yaml.Node) -> None:
    """Refused when ``root`` with every alias expanded has more than MAX_NODES nodes, is nested deeper
    than MAX_DEPTH, or contains itself. Each node is measured once, so a small file is checked quickly
    however far it would expand."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, levels) once expanded
    open_nodes: set[int] = set()

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    def measure(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if depth > MAX_DEPTH:  # the composer refused deeper text, but keep the recursion bounded here too
            raise Refused(None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        if key in open_nodes:
            raise Refused(
                None,
                None,
                "an alias names a node that contains it; a search space cannot be recursive",
                node.start_mark,
            )
        if key not in measured:
            open_nodes.add(key)
            nodes, levels = 1, 1
            for child in children(node):
                nodes += measure(child, depth + 1)
                levels = max(levels, 1 + measured[id(child)][1])
                if nodes > MAX_NODES:
                    raise Refused(
                        None,
                        None,
                        f"its aliases expand it to more than {MAX_NODES} YAML nodes; a search space may hold "
                        f"at most {MAX_NODES}",
                        node.start_mark,
                    )
            open_nodes.discard(key)
            measured[key] = (nodes, levels)
        if depth + measured[key][1] - 1 > MAX_DEPTH:
            raise Refused(
                None,
                None,
                f"its aliases nest it deeper than {MAX_DEPTH} levels; a search space needs a few",
                node.start_mark,
            )
        return measured[key][0]

    measure(root, 1)
