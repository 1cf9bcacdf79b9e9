"""The glob semantics of ``training.source.paths``, as a table: glob, path, matches or not."""

from __future__ import annotations

import pytest

from controller.planning.globs import matches, touches

TABLE = [
    # A glob matches the whole path from the repository root.
    ("train.py", "train.py", True),
    ("train.py", "tools/train.py", False),
    ("train.py", "train.pyc", False),
    ("/train.py", "train.py", True),
    ("src/model.py", "src/model.py", True),
    # * stays within one segment, and matches dotfiles and the empty string.
    ("*.yaml", "a.yaml", True),
    ("*.yaml", ".yaml", True),
    ("*.yaml", "conf/a.yaml", False),
    ("src/*", "src/a.py", True),
    ("src/*", "src/pkg/a.py", False),
    ("src/*.py", "src/a.py", True),
    ("*", "README.md", True),
    ("*", "src/a.py", False),
    # ? is one character, never /.
    ("v?.txt", "v1.txt", True),
    ("v?.txt", "v10.txt", False),
    ("a?b", "a/b", False),
    # Character classes, negated with !, never matching /.
    ("[abc].py", "b.py", True),
    ("[abc].py", "d.py", False),
    ("[a-c].py", "b.py", True),
    ("[!a-c].py", "d.py", True),
    ("[!a-c].py", "b.py", False),
    ("a[!x]b", "a/b", False),
    ("[]].py", "].py", True),
    ("[*].py", "*.py", True),
    ("[*].py", "a.py", False),
    ("[z-a].py", "m.py", False),
    ("[.py", "[.py", True),  # no closing ]: a literal [
    # ** crosses directories; as a whole segment it also matches none.
    ("**", "train.py", True),
    ("**", "a/b/c.py", True),
    ("src/**", "src/a.py", True),
    ("src/**", "src/pkg/deep/a.py", True),
    ("src/**", "src", False),
    ("src/**", "srcs/a.py", False),
    ("src/**", "lib/src/a.py", False),
    ("**/*.yaml", "a.yaml", True),
    ("**/*.yaml", "conf/deep/a.yaml", True),
    ("**/*.yaml", "a.yml", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a/**/b", "ab", False),
    ("**/test_*.py", "test_a.py", True),
    ("**/test_*.py", "tests/unit/test_a.py", True),
    ("**/test_*.py", "tests/unit/a_test.py", False),
    ("src/**.py", "src/a.py", True),
    ("src/**.py", "src/pkg/a.py", True),
    ("src/**.py", "src/pkg/a.txt", False),
    ("churn/**", "churn/train.py", True),
    ("churn/**", "fraud/train.py", False),
    # A trailing / names a directory.
    ("src/", "src/a.py", True),
    ("src/", "src/pkg/a.py", True),
    ("src/", "src", False),
    # Case-sensitive; regex metacharacters are literal.
    ("Train.py", "train.py", False),
    ("a+b(1).py", "a+b(1).py", True),
    ("a.py", "aXpy", False),
    ("$x^", "$x^", True),
]


@pytest.mark.parametrize(("glob", "path", "expected"), TABLE)
def test_glob(glob: str, path: str, expected: bool) -> None:
    assert matches(path, glob) is expected
    assert touches([path], [glob]) is expected


def test_touches_any_path_any_glob() -> None:
    globs = ["src/**", "train.py"]
    assert touches(["README.md", "src/model.py"], globs)
    assert touches(["train.py"], globs)
    assert not touches(["README.md", "docs/index.md", "tools/train.py"], globs)
    assert not touches([], globs)
    assert not touches(["train.py"], [])
    assert touches(["anything/at/all"], ["**"])  # the default of training.source.paths
