"""The globs of ``training.source.paths``: which changed paths of the code repository retrain.

``fnmatch`` cannot express them: its ``*`` crosses ``/`` (so ``src/*`` would match every file
under ``src``) and it has no ``**``; Python 3.11 has no ``PurePath.full_match``. So the syntax is
defined here, once, close to GitHub Actions' ``paths`` filter, which authors of these files know:

* A glob is matched against the whole path, relative to the repository root, ``/``-separated:
  ``train.py`` matches ``train.py`` only, never ``tools/train.py``. A leading ``/`` is ignored
  (every path is already relative to the root).
* ``*`` matches any run of characters within one path segment (not ``/``), the empty one and a
  leading ``.`` included: ``*.yaml`` matches ``a.yaml`` and ``.yaml``, not ``conf/a.yaml``.
* ``?`` matches one character other than ``/``; ``[abc]``, ``[a-z]`` and ``[!abc]`` match one
  character (other than ``/``) of the set, as in ``fnmatch``. A ``[`` without its ``]`` is a
  literal ``[``. There is no escape character: ``[*]`` matches a literal ``*``.
* ``**`` matches any run of characters, ``/`` included. As a whole segment it also matches zero
  segments: ``**/*.yaml`` matches ``a.yaml`` and ``conf/a.yaml``, ``a/**/b`` matches ``a/b`` and
  ``a/x/y/b``, ``src/**`` matches everything under ``src`` and ``**`` matches every path.
* A glob ending in ``/`` names a directory: ``src/`` is ``src/**``.
* Matching is case-sensitive, as Git paths are.
"""

from __future__ import annotations

import re
from functools import lru_cache


def touches(paths: list[str], globs: list[str]) -> bool:
    """Whether any of ``paths`` matches any of ``globs`` (no globs: nothing ever matches)."""
    patterns = [_compile(glob) for glob in globs]
    return any(pattern.fullmatch(path) for path in paths for pattern in patterns)


def matches(path: str, glob: str) -> bool:
    """Whether ``path`` (relative to the repository root) matches ``glob``."""
    return _compile(glob).fullmatch(path) is not None


@lru_cache(maxsize=256)
def _compile(glob: str) -> re.Pattern[str]:
    """The regular expression of ``glob``; cached, since the same few globs meet many paths."""
    glob = glob.lstrip("/")
    if glob.endswith("/"):
        glob += "**"
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        whole = i == 0 or glob[i - 1] == "/"  # the start of a segment
        if glob.startswith("**/", i) and whole:
            out.append("(?:.*/)?")  # zero or more whole segments
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
            while i < n and glob[i] == "*":
                i += 1
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = _class_end(glob, i)
            if end is None:
                out.append(re.escape(c))
                i += 1
            else:
                out.append(_class(glob[i + 1 : end]))
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_end(glob: str, start: int) -> int | None:
    """The index of the ``]`` closing the class opened at ``start`` (a ``]`` first is literal)."""
    j = start + 1
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    end = glob.find("]", j)
    return end if end != -1 else None


def _class(body: str) -> str:
    """A character class that never matches ``/``. Ranges stay ranges; a reversed one such as
    ``z-a`` matches nothing, as in ``fnmatch``, rather than failing to compile."""
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    parts: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo <= hi:
                parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 3
        else:
            parts.append(re.escape(body[i]))
            i += 1
    if not parts:
        return "(?!)" if not negate else "[^/]"
    return f"(?!/)[{'^' if negate else ''}{''.join(parts)}]"
