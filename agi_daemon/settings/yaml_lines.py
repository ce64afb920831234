"""Read the admin's YAML file into plain values, remembering the line of every key.

Mapping keys are kept exactly as written (an unquoted `+33184880000:` stays that text, not a
number), and plain values that YAML 1.1 would silently change keep their written text too:
`extension: 0101` is not octal 65, `phones: [+33612000001]` keeps its `+`, `default_region: NO`
is Norway, not false. Values read as numbers, true/false or null only when written plainly
(`5038`, `true`, `~`).

A hostile or careless file cannot make reading it slow or huge: aliases and merge keys may
repeat values only up to MAX_VALUES in all (a "billion laughs" file is refused, not
expanded), nesting stops at MAX_DEPTH levels, integers longer than MAX_INT_DIGITS stay text,
and characters YAML does not allow (a NUL byte) are a problem with their line, not a crash.
"""
from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import KeyPath, ProblemLog, dotted

_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]*)")

MAX_VALUES = 100_000
"""Values the whole document may hold once every alias and merge key is expanded."""
MAX_DEPTH = 64
"""Mappings and lists nested inside each other."""
MAX_INT_DIGITS = 100
"""A longer plain integer is kept as text (the schema then says what it expects)."""


class KeyLines:
    """The 1-based line of each key path (list items: the item's own line)."""

    def __init__(self) -> None:
        self._lines: dict[KeyPath, int] = {}

    def set(self, path: KeyPath, line: int) -> None:
        self._lines[path] = line

    def line_of(self, path: KeyPath) -> int:
        """The line of `path`, or of its nearest parent key present in the file (else 1)."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1


def load_yaml(text: str, lines: KeyLines, log: ProblemLog) -> Any:
    """The document's values ({} for an empty file), with `lines` filled in; None (and a
    `(yaml)` problem) when the text is not YAML. Duplicate keys are reported, the first kept."""
    tabs = [number for number, line in enumerate(text.splitlines(), 1)
            if "\t" in line[: len(line) - len(line.lstrip(" \t"))]]
    for number in tabs:
        log.add_at(number, "(yaml)", "a tab in the indentation: indent with spaces")
    if tabs:
        return None
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow, such as NUL
        log.add_at(_reader_line(text, exc), "(yaml)", _reader_message(exc))
        return None
    try:
        node = loader.get_single_node()
        return {} if node is None else _Reader(loader, lines, log).value(node, ())
    except yaml.MarkedYAMLError as exc:
        misplaced = _misindented(text, _line(exc)) if _is_indentation_error(exc) else None
        if misplaced is not None:
            log.add_at(*misplaced)
        else:
            log.add_at(_line(exc), "(yaml)", _syntax_message(exc))
        return None
    except yaml.YAMLError as exc:
        log.add_at(_reader_line(text, exc), "(yaml)", _reader_message(exc))
        return None
    except (ValueError, OverflowError) as exc:  # PyYAML's own int(): `%YAML 1.9999...` (4,300 digits and more)
        log.add_at(loader.get_mark().line + 1, "(yaml)", f"cannot be read: {str(exc).split(':')[0]}")
        return None
    finally:
        loader.dispose()


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts, while it composes the document, how many values it
    would hold with every alias expanded (an alias counts the whole value it refers to; a
    merge key `<<: *x` is an alias), and how deep it nests. It stops with a problem at the
    line where a limit is crossed, before anything is expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its expanded size

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), mark)  # unknown: an alias to itself, refused later
            return node
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.MarkedYAMLError(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=mark)
        before = self._values
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, mark)
        self._sizes[id(node)] = self._values - before
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise yaml.MarkedYAMLError(
                problem=f"the file expands to more than {MAX_VALUES:,} values (each use of an alias *name "
                        "or a merge key << counts all the values it repeats)", problem_mark=mark)


class _Reader:
    """Turns the composed YAML nodes into values, noting the line of every key on the way."""

    def __init__(self, loader: yaml.SafeLoader, lines: KeyLines, log: ProblemLog) -> None:
        self._loader = loader
        self._lines = lines
        self._log = log
        self._open: set[int] = set()  # nodes being read, to stop on recursive aliases
        self._split: dict[int, tuple[list[tuple[Node, Node]], list[tuple[Node, Node]]]] = {}

    def value(self, node: Node, path: KeyPath) -> Any:
        if id(node) in self._open:
            raise yaml.MarkedYAMLError(problem="an alias refers to itself", problem_mark=node.start_mark)
        self._open.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            assert isinstance(node, ScalarNode)  # the third and last kind of YAML node
            return self._scalar(node)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        merged, written = self._merged_and_written(node)
        result: dict[str, Any] = {}
        for key_node, value_node in merged:
            self._entry(result, key_node, value_node, path)
        seen: set[str] = set()
        for key_node, value_node in written:
            if isinstance(key_node, ScalarNode) and key_node.value in seen:
                self._log.add_at(key_node.start_mark.line + 1, dotted((*path, key_node.value)),
                                 "duplicate key (the first one is used)")
                continue
            self._entry(result, key_node, value_node, path)
            if isinstance(key_node, ScalarNode):
                seen.add(key_node.value)
        return result

    def _merged_and_written(self, node: MappingNode) -> tuple[list[tuple[Node, Node]], list[tuple[Node, Node]]]:
        """Entries brought in by `<<: *anchor`, and the entries written in this mapping."""
        if id(node) not in self._split:
            written = [(key, value) for key, value in node.value if key.tag != _MERGE_TAG]
            self._loader.flatten_mapping(node)  # merged entries first, then the written ones
            self._split[id(node)] = (node.value[: len(node.value) - len(written)], written)
        return self._split[id(node)]

    def _entry(self, result: dict[str, Any], key_node: Node, value_node: Node, path: KeyPath) -> None:
        if not isinstance(key_node, ScalarNode):
            raise yaml.MarkedYAMLError(problem="a key must be plain text", problem_mark=key_node.start_mark)
        key_path = (*path, key_node.value)
        self._lines.set(key_path, key_node.start_mark.line + 1)
        result[key_node.value] = self.value(value_node, key_path)

    def _sequence(self, node: SequenceNode, path: KeyPath) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self._lines.set((*path, index), item.start_mark.line + 1)
            items.append(self.value(item, (*path, index)))
        return items

    def _scalar(self, node: ScalarNode) -> Any:
        if node.style is None:  # plain, unquoted
            lossy_int = node.tag == _INT_TAG and not _PLAIN_INT.fullmatch(node.value)
            lossy_int = lossy_int or (node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS)
            lossy_bool = node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false")
            if lossy_int or lossy_bool or node.tag == _TIMESTAMP_TAG:
                return node.value
        try:
            return self._loader.construct_object(node, deep=True)
        except Exception:  # PyYAML's constructors fail in many ways: `!!int "9999..."`, `!!timestamp "99999-01-01"`, `!!float ""`
            tag = node.tag.rsplit(":", 1)[-1]
            raise yaml.MarkedYAMLError(problem=f"not a {tag} value YAML can read", problem_mark=node.start_mark) from None



def _reader_line(text: str, error: yaml.YAMLError) -> int:
    """The line of a reader error (it gives a character position, not a line)."""
    position = getattr(error, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def _reader_message(error: yaml.YAMLError) -> str:
    """A reader error in the admin's words: which character is not allowed."""
    character = getattr(error, "character", None)
    if isinstance(character, int):
        return f"character U+{character:04X} is not allowed in a YAML file (control characters such as NUL are not)"
    return str(error).splitlines()[0]


def _line(error: yaml.MarkedYAMLError) -> int:
    mark = error.problem_mark or error.context_mark
    return mark.line + 1 if mark else 1


_INDENTATION_ERRORS = ("mapping values are not allowed here", "expected <block end>",
                       "could not find expected ':'", "expected '<document start>'")
_KEY = re.compile(r"(?:- +)?((?:\"[^\"]*\"|'[^']*'|[^#\s\"'][^:#]*?)):(?:\s+(#.*)?)?$|(?:- +)?(?:\"[^\"]*\"|'[^']*'|[^#\s\"'][^:#]*?):\s")
_WINDOW = 5  # lines before the parser's complaint where the misplaced line is looked for


def _is_indentation_error(error: yaml.MarkedYAMLError) -> bool:
    return any(text in (error.problem or "") for text in _INDENTATION_ERRORS)


def _misindented(text: str, error_line: int) -> tuple[int, str, str] | None:
    """(line, "(yaml)", message) for the key line whose indentation does not fit the lines
    before it, looked for just before where PyYAML gave up (it often notices a line late);
    None when no such line is found."""
    lines = text.splitlines()
    levels: list[int] = []  # indentations of the mappings open at this point
    opener: int | None = None  # indentation of the previous line when it was `key:` alone
    for number, line in enumerate(lines[:error_line], 1):
        content = line.lstrip(" ")
        if not content or content.startswith("#"):
            continue
        indent = len(line) - len(content)
        expected = _expected_indent(indent, content.startswith("-"), levels, opener, lines[number:])
        key = _KEY.match(content)
        if expected is not None and key and number >= error_line - _WINDOW:
            before = _first_at(expected, lines[: number - 1])
            if opener is None and before is not None and _more_follow_at(indent, expected, lines[number:]):
                # the lines after agree with this one: the odd one is the line before
                number, indent, expected = before, expected, indent
                content = lines[number - 1].lstrip(" ")
            name = content.removeprefix("-").strip().split(":")[0]
            return number, "(yaml)", (f"wrong indentation: '{name}:' is indented by {indent} spaces, "
                                      f"the keys around it by {expected}")
        levels = [level for level in levels if level < indent] + [indent]
        if content.startswith("- "):
            levels.append(indent + 2)
        opener = indent if key and key.group(1) is not None else None
    return None


def _indents(lines: list[str]) -> list[int]:
    """The indentation of each line that holds something (not blank, not a comment)."""
    return [len(line) - len(line.lstrip(" ")) for line in lines
            if line.strip() and not line.lstrip().startswith("#")]


def _more_follow_at(indent: int, other: int, after: list[str]) -> bool:
    """Whether, in the rest of this block, more lines sit at `indent` than at `other`: then
    the lines before, at `other`, are the odd ones."""
    count = {indent: 0, other: 0}
    for level in _indents(after):
        if level < min(indent, other):
            break
        if level in count:
            count[level] += 1
    return count[indent] > count[other]


def _first_at(indent: int, before: list[str]) -> int | None:
    """The 1-based line starting the run of lines at exactly `indent` that ends `before`;
    None when the line just before is not at `indent`."""
    first = None
    for number in range(len(before), 0, -1):
        line = before[number - 1]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(line) - len(line.lstrip(" ")) != indent:
            break
        first = number
    return first


def _expected_indent(indent: int, item: bool, levels: list[int], opener: int | None,
                     after: list[str]) -> int | None:
    """None when a line at `indent` fits; else the indentation it should have."""
    if opener is not None:
        if indent > opener or (indent == opener and item):  # `key:` then `- item` is fine
            return None
        deeper = [len(line) - len(line.lstrip(" ")) for line in after
                  if line.strip() and not line.lstrip().startswith("#")]
        return deeper[0] if deeper and deeper[0] > opener else opener + 2
    if not levels or indent in levels:
        return None
    return min(levels, key=lambda level: (abs(level - indent), -level))


def _syntax_message(error: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem, with where the unfinished construct started when it says so."""
    if error.problem and "'\\t'" in error.problem:
        return "a tab character here: YAML needs spaces"
    message = error.problem or error.context or "not valid YAML"
    if error.problem and error.context and error.context_mark:
        message += f" ({error.context} started on line {error.context_mark.line + 1})"
    return message
