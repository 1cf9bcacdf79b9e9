"""Edit the version pins of a ModelDeployment file without rewriting anything else in it.

A promotion is a commit a person reviews and may revert, so its diff must be the pin and nothing
else: comments, key order, quoting, indentation and line endings stay byte for byte. Dumping the
YAML again would lose all of that, so the file is never re-serialized. The YAML is composed only
to find where the pins are (each node carries its start and end offsets in the text), and the
edit replaces, inserts or removes exactly those spans. A file where such an edit could mean more
than it says (an anchor or alias on a pin, a merge key, a tag, a block scalar, duplicate keys,
lone CR line endings, several ModelDeployments) is refused rather than guessed at; and every edit
is checked afterwards: the file must load to the same data but for the pins.

Pure: bytes in, bytes out. Offsets are character offsets into the decoded text (PyYAML's marks
count characters), so the file is decoded as UTF-8 and encoded back unchanged around the edit.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controller.api.documents import Environment
from controller.api.loader import load_deployment, parse_documents
from controller.errors import InvalidInput, Problem

ALIASES = ("champion", "challenger")
_VERSION = re.compile(r"^[1-9][0-9]*$")
_Loader = yaml.SafeLoader  # the pure-Python loader: its marks are character offsets


@dataclass(frozen=True)
class Pins:
    """The versions a ModelDeployment file pins (None: no pin)."""

    champion: str | None
    challenger: str | None


def read_pins(data: bytes, *, path: str, name: str | None = None) -> Pins:
    """The champion and challenger versions pinned in ``data``, the file ``path``.

    ``name`` picks the ModelDeployment by ``metadata.name`` when the file holds more than one
    document. Raises InvalidInput (naming ``path``, the line and the field) when the file cannot
    be read this way.
    """
    doc = _Document(data, path=path, name=name)
    return Pins(doc.version_of("champion"), doc.version_of("challenger"))


def edit_pins(
    data: bytes,
    *,
    path: str,
    name: str | None = None,
    champion: str | None = None,
    challenger: str | None = None,
    drop_challenger: bool = False,
) -> bytes:
    """``data`` with ``spec.champion.version`` set to ``champion`` and ``spec.challenger`` set to
    ``challenger`` (or removed, with ``drop_challenger``); None leaves a pin as it is.

    A version that is already pinned keeps the quoting of its value (``"2"`` -> ``"7"``, ``2`` ->
    ``7``). A missing pin is inserted right after the champion entry (the challenger) or the
    ``model`` entry (the champion), in the style of the other pin (block or flow, quoting,
    indentation) and with the file's line endings. Removing the challenger removes its entry's
    lines (from the key to the end of its value). Every other byte is kept; an edit that changes
    nothing returns ``data`` itself. Raises InvalidInput when the file cannot be edited safely.
    """
    if challenger is not None and drop_challenger:
        raise ValueError("set the challenger or drop it, not both")
    for alias, version in (("champion", champion), ("challenger", challenger)):
        if version is not None and not _VERSION.match(version):
            raise InvalidInput(
                [Problem(path, None, f"spec.{alias}.version", f"not a version: {version!r}")]
            )
    doc = _Document(data, path=path, name=name)
    wanted = {
        "champion": champion if champion is not None else doc.version_of("champion"),
        "challenger": None if drop_challenger else (challenger or doc.version_of("challenger")),
    }
    if wanted["champion"] is not None and wanted["champion"] == wanted["challenger"]:
        raise InvalidInput(
            [doc.problem("spec.challenger.version", "must differ from spec.champion.version")]
        )
    edits: list[tuple[int, int, str]] = []
    if champion is not None:
        edits += doc.set_pin("champion", champion, after=("model",))
    if challenger is not None:
        edits += doc.set_pin("challenger", challenger, after=("champion", "model"))
    if drop_challenger:
        edits += doc.remove("challenger")
    if not edits:
        return data
    text = doc.text
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    doc.check_result(text, wanted)
    return text.encode("utf-8")


def check_deployment(data: bytes, *, path: str, name: str, environment: Environment) -> None:
    """Raise InvalidInput unless the ModelDeployment ``name`` in ``data`` (an edited file) is
    still a valid document of ``environment``: a write-back must never commit a revision the
    controller would then refuse whole. Each problem names ``path`` and the field."""
    docs, problems = parse_documents(path, data)
    for doc, _ in docs:
        if isinstance(doc, dict) and doc.get("kind") == "ModelDeployment":
            meta = doc.get("metadata")
            if isinstance(meta, dict) and meta.get("name") == name:
                try:
                    load_deployment(doc, environment=environment, source=path, revision="")
                except InvalidInput as exc:
                    problems += exc.problems
    if problems:
        raise InvalidInput(
            [Problem(p.file, p.line, p.field, f"after the edit: {p.message}") for p in problems]
        )


# --- the document and its spans ---------------------------------------------------------------


class _Document:
    """One ModelDeployment of a file, composed to nodes that know where they are in the text."""

    def __init__(self, data: bytes, *, path: str, name: str | None) -> None:
        self.path = path
        self.name = name
        try:
            self.text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._refuse(None, None, f"not UTF-8 text ({exc.reason})") from exc
        if re.search(r"\r(?!\n)", self.text):
            raise self._refuse(None, None, "line endings are a lone CR: cannot edit it safely")
        try:
            roots = [n for n in yaml.compose_all(self.text, Loader=_Loader) if n is not None]
            self.anchored = {
                e.start_mark.index
                for e in yaml.parse(self.text, Loader=_Loader)
                if getattr(e, "anchor", None) is not None and e.start_mark is not None
            }
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
            raise self._refuse(
                mark.line + 1 if mark else None, None, f"invalid YAML: {what}"
            ) from exc
        except yaml.YAMLError as exc:
            raise self._refuse(None, None, f"invalid YAML: {exc}") from exc
        self.roots = roots
        self.root = self._select(roots)
        entry = self._entry(self.root, "spec", "")
        spec = entry[1] if entry is not None else None
        if entry is None or not isinstance(spec, MappingNode):
            raise self._refuse(self.root.start_mark.line + 1, "spec", "missing or not a mapping")
        self.spec_key: ScalarNode = entry[0]
        self.spec: MappingNode = spec
        self._plain_path(self.spec, "spec")

    # -- finding

    def _select(self, roots: list[Node]) -> MappingNode:
        found = []
        for root in roots:
            if not isinstance(root, MappingNode):
                continue
            kind = self._scalar_at(root, "kind")
            meta = self._entry(root, "metadata", "")
            named = self._scalar_at(meta[1], "name") if meta else None
            if kind == "ModelDeployment" and (self.name is None or named == self.name):
                found.append(root)
        if len(found) == 1:
            return found[0]
        what = "ModelDeployment" + (f" named {self.name!r}" if self.name else "")
        if not found:
            raise self._refuse(None, None, f"no {what} in the file")
        raise self._refuse(None, None, f"several documents match ({what}): cannot tell which")

    def _scalar_at(self, node: Node, key: str) -> str | None:
        if not isinstance(node, MappingNode):
            return None
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key and isinstance(v, ScalarNode):
                return str(v.value)
        return None

    def _entry(self, mapping: Node, key: str, where: str) -> tuple[ScalarNode, Node] | None:
        """The (key, value) nodes of ``key`` in ``mapping``; refuses duplicates and merge keys."""
        assert isinstance(mapping, MappingNode)
        found = []
        for k, v in mapping.value:
            if isinstance(k, ScalarNode) and k.value == "<<" and k.tag.endswith(":merge"):
                raise self._refuse(k.start_mark.line + 1, where or None, "has a merge key (<<)")
            if isinstance(k, ScalarNode) and k.value == key:
                found.append((k, v))
        field = f"{where}.{key}" if where else key
        if len(found) > 1:
            raise self._refuse(found[1][0].start_mark.line + 1, field, "duplicate key")
        return found[0] if found else None

    def _plain_path(self, node: Node, field: str) -> None:
        """Refuse a node an edit could not change alone: one with an anchor (an alias elsewhere
        would change with it, or it is itself an alias's target) or an explicit tag."""
        if node.start_mark.index in self.anchored:
            raise self._refuse(node.start_mark.line + 1, field, "has an anchor or is an alias")
        if self.text[node.start_mark.index : node.start_mark.index + 1] == "!":
            raise self._refuse(node.start_mark.line + 1, field, "has an explicit tag")

    def _pin(self, alias: str) -> tuple[ScalarNode, MappingNode, ScalarNode, ScalarNode] | None:
        """The nodes of ``spec.<alias>: {version: V}``: key, pin mapping, version key, value."""
        entry = self._entry(self.spec, alias, "spec")
        if entry is None:
            return None
        key, pin = entry
        field = f"spec.{alias}"
        self._plain_path(pin, field)
        if not isinstance(pin, MappingNode):
            raise self._refuse(pin.start_mark.line + 1, field, "is not a mapping {version: ...}")
        version = self._entry(pin, "version", field)
        if version is None or not isinstance(version[1], ScalarNode):
            raise self._refuse(pin.start_mark.line + 1, f"{field}.version", "missing")
        vkey, value = version
        assert isinstance(value, ScalarNode)
        self._plain_path(value, f"{field}.version")
        if value.style not in (None, '"', "'"):
            raise self._refuse(value.start_mark.line + 1, f"{field}.version", "is a block scalar")
        return key, pin, vkey, value

    def version_of(self, alias: str) -> str | None:
        pin = self._pin(alias)
        return None if pin is None else str(pin[3].value)

    # -- editing

    def set_pin(
        self, alias: str, version: str, *, after: tuple[str, ...]
    ) -> list[tuple[int, int, str]]:
        """The edit setting ``spec.<alias>.version``: the value replaced in its own quoting, or,
        with no such pin, an entry inserted after the first of ``after`` present."""
        pin = self._pin(alias)
        if pin is not None:
            value = pin[3]
            if str(value.value) == version:
                return []
            quote = value.style or ""
            return [(value.start_mark.index, value.end_mark.index, f"{quote}{version}{quote}")]
        for key in after:
            entry = self._entry(self.spec, key, "spec")
            if entry is not None:
                return [self._insert_after(entry, alias, version)]
        raise self._refuse(self.spec.start_mark.line + 1, f"spec.{after[-1]}", "missing")

    def _insert_after(
        self, entry: tuple[ScalarNode, Node], alias: str, version: str
    ) -> tuple[int, int, str]:
        key, value = entry
        template = self._pin("champion") or self._pin("challenger")
        end = max(key.end_mark.index, _content_end(value))
        if self.spec.flow_style:
            pin = self._render_flow(template, version)
            sep = ": "
            if template is not None and _simple(self._between(template[0], template[1])):
                sep = self._between(template[0], template[1])
            return (end, end, f", {alias}{sep}{pin}")
        indent = self._indent(key, f"spec.{key.value}")
        newline = self.text.find("\n", end)
        eol = self._eol(newline)
        at = len(self.text) if newline < 0 else newline + 1
        lead = eol if newline < 0 else ""
        if template is not None and template[1].flow_style:
            sep = self._between(template[0], template[1])
            line = f"{indent}{alias}{sep if _simple(sep) else ': '}{self._render_flow(template, version)}"
            return (at, at, f"{lead}{line}{eol}")
        if template is not None:
            _, _, vkey, vvalue = template
            nested = self._indent(vkey, f"spec.{template[0].value}.version")
            sep = self._between(vkey, vvalue)
            sep = sep if _simple(sep) else ": "
            quote = vvalue.style or ""
        else:
            unit = len(indent) - self.spec_key.start_mark.column
            nested, sep, quote = indent + " " * (unit if unit > 0 else 2), ": ", '"'
        block = f"{indent}{alias}:{eol}{nested}version{sep}{quote}{version}{quote}{eol}"
        return (at, at, f"{lead}{block}")

    def _render_flow(
        self, template: tuple[ScalarNode, MappingNode, ScalarNode, ScalarNode] | None, version: str
    ) -> str:
        opening, sep, closing, quote = "{", ": ", "}", '"'
        if template is not None and template[1].flow_style:
            _, pin, vkey, vvalue = template
            parts = (
                self.text[pin.start_mark.index : vkey.start_mark.index],
                self._between(vkey, vvalue),
                self.text[vvalue.end_mark.index : pin.end_mark.index],
            )
            if all(_simple(p) for p in parts):
                opening, sep, closing = parts
            quote = vvalue.style or ""
        elif template is not None:
            quote = template[3].style or ""
        return f"{opening}version{sep}{quote}{version}{quote}{closing}"

    def remove(self, alias: str) -> list[tuple[int, int, str]]:
        """The edit removing ``spec.<alias>``: its lines in a block mapping, its entry (and one
        separating comma) in a flow mapping."""
        if self._pin(alias) is None:
            return []
        pairs = self.spec.value
        i = next(n for n, (k, _) in enumerate(pairs) if k.value == alias)
        key, value = pairs[i]
        end = max(key.end_mark.index, _content_end(value))
        if self.spec.flow_style:
            if i > 0:
                prev_key, prev_value = pairs[i - 1]
                return [(max(prev_key.end_mark.index, _content_end(prev_value)), end, "")]
            if len(pairs) > 1:
                return [(key.start_mark.index, pairs[1][0].start_mark.index, "")]
            return [(key.start_mark.index, end, "")]
        self._indent(key, f"spec.{alias}")
        start = self.text.rfind("\n", 0, key.start_mark.index) + 1
        newline = self.text.find("\n", end)
        return [(start, len(self.text) if newline < 0 else newline + 1, "")]

    def _indent(self, key: ScalarNode, field: str) -> str:
        """The spaces before ``key`` on its line; refuses a key that does not start its line."""
        start = self.text.rfind("\n", 0, key.start_mark.index) + 1
        indent = self.text[start : key.start_mark.index]
        if indent.strip(" "):
            raise self._refuse(key.start_mark.line + 1, field, "does not start its line")
        return indent

    def _between(self, a: Node, b: Node) -> str:
        return self.text[a.end_mark.index : b.start_mark.index]

    def _eol(self, newline: int) -> str:
        if newline > 0:
            return "\r\n" if self.text[newline - 1] == "\r" else "\n"
        return "\r\n" if "\r\n" in self.text else "\n"

    # -- checking

    def check_result(self, text: str, wanted: dict[str, str | None]) -> None:
        """The edited file must hold the same data but for the pins, and the pins wanted."""
        try:
            before = list(yaml.load_all(self.text, Loader=_Loader))
            after = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError as exc:
            raise self._refuse(None, None, "the edit would not be valid YAML") from exc
        index = self.roots.index(self.root)
        expected: list[Any] = copy.deepcopy(before)
        got: list[Any] = copy.deepcopy(after)
        ok = len(got) == len(expected)
        if ok:
            spec_before, spec_after = expected[index]["spec"], got[index]["spec"]
            for alias in ALIASES:
                pin = spec_after.pop(alias, None)
                spec_before.pop(alias, None)
                version = pin.get("version") if isinstance(pin, dict) else None
                ok = ok and (None if version is None else str(version)) == wanted[alias]
            ok = ok and list(spec_before) == list(spec_after) and got == expected
        if not ok:
            raise self._refuse(None, "spec", "the edit would change more than the pins")

    def problem(self, field: str, message: str) -> Problem:
        return Problem(self.path, None, field, message)

    def _refuse(self, line: int | None, field: str | None, message: str) -> InvalidInput:
        return InvalidInput([Problem(self.path, line, field, f"cannot edit the pins: {message}")])


def _content_end(node: Node) -> int:
    """Where the text of ``node`` ends: a block collection's own end mark runs on to the next
    token, past comments and blank lines that belong to what follows."""
    if isinstance(node, ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    if isinstance(node, MappingNode):
        ends = [_content_end(part) for pair in node.value for part in pair]
    elif isinstance(node, SequenceNode):
        ends = [_content_end(item) for item in node.value]
    else:  # pragma: no cover - compose yields only these three kinds
        ends = []
    return max(ends, default=int(node.start_mark.index))


def _simple(text: str) -> bool:
    """A separator worth copying: on one line, with no comment."""
    return "\n" not in text and "\r" not in text and "#" not in text
