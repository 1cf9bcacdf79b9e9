"""``CodeRepo``, the training pipeline's view of a code repository, against real Git.

Every test runs on a local path (read in place) and on a ``file://`` URL (mirrored under a cache
directory), since the two reach the objects differently but must answer alike. Repositories are
made by the ``git`` command line and kept to a few files and commits.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.errors import InvalidInput, SourceUnavailable
from controller.planning.globs import touches
from controller.sources import CodeRepo
from controller.sources.git import mirror_dir
from tests.helpers import ConfigRepo, git

KINDS = ["local", "mirror"]
Open = Callable[[Path], CodeRepo]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_code(kind: str, tmp_path: Path) -> Iterator[Open]:
    """Opens a repository the way ``kind`` says; closes every one at the end."""
    opened: list[CodeRepo] = []

    def open_(path: Path) -> CodeRepo:
        repo = str(path) if kind == "local" else path.as_uri()
        code = CodeRepo(repo, cache_dir=tmp_path / "cache")
        opened.append(code)
        return code

    yield open_
    for code in opened:
        code.close()


@pytest.fixture
def origin(tmp_path: Path) -> ConfigRepo:
    """A small code repository: a package, a training script and a README, on ``main``."""
    repo = ConfigRepo(tmp_path / "code", envs=())
    repo.write("src/model.py", "WEIGHTS = 1\n")
    repo.write("train.py", "import src.model\n")
    repo.write("README.md", "# model\n")
    repo.commit("Code")
    return repo


def objects_of(code: CodeRepo, origin: ConfigRepo, tmp_path: Path) -> Path:
    """The repository whose object database ``code`` reads: the mirror, or the origin itself."""
    return mirror_dir(tmp_path / "cache", code.repo) if "://" in code.repo else origin.path


def rename(origin: ConfigRepo, old: str, new: str) -> None:
    (origin.path / new).parent.mkdir(parents=True, exist_ok=True)
    git(origin.path, "mv", old, new)


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` (but Git's ``.git`` link) -> its text."""
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != ".git"
    }


def tree(origin: ConfigRepo, sha: str) -> dict[str, str]:
    """Every file of commit ``sha`` -> its text, as Git itself lists them."""
    paths = git(origin.path, "ls-tree", "-r", "--name-only", sha).splitlines()
    return {p: git(origin.path, "show", f"{sha}:{p}") + "\n" for p in paths}


# --- head ---------------------------------------------------------------------------------------


def test_head_of_a_branch(origin: ConfigRepo, open_code: Open) -> None:
    main = origin.head()
    git(origin.path, "switch", "-q", "-c", "dev")
    dev = origin.commit("Try a bigger model")
    git(origin.path, "switch", "-q", "main")
    code = open_code(origin.path)

    head = code.head("main")
    assert (head.sha, head.short, head.subject) == (main, main[:7], "Code")
    assert code.head("dev").sha == dev
    assert code.head("dev").subject == "Try a bigger model"


@pytest.mark.parametrize("branch", ["nope", "mai", "main/x", "-main", "main..dev", "HEAD"])
def test_a_missing_branch_is_invalid_input_naming_the_field(
    origin: ConfigRepo, open_code: Open, branch: str
) -> None:
    """Only a branch of exactly that name counts: no prefix, no revision syntax, no option."""
    git(origin.path, "branch", "dev")
    code = open_code(origin.path)
    with pytest.raises(InvalidInput) as caught:
        code.head(branch)
    [problem] = caught.value.problems
    assert problem.field == "training.source.branch"
    assert repr(branch) in problem.message
    assert code.display in problem.message


def test_an_unreachable_repository_is_source_unavailable_with_credentials_redacted(
    tmp_path: Path,
) -> None:
    url = "https://user:secret@127.0.0.1:1/x.git"
    code = CodeRepo(url, cache_dir=tmp_path / "cache")
    assert code.display == "https://***@127.0.0.1:1/x.git"
    for ask in (code.fetch, lambda: code.head("main")):
        with pytest.raises(SourceUnavailable) as caught:
            ask()
        message = str(caught.value)
        assert message.startswith(f"repository {code.display}: ")
        assert "secret" not in message
        # Git's own words, not GitPython's quoting of them.
        assert "fatal:" in message
        assert not message.endswith("'")
    assert not any((tmp_path / "cache").glob("*"))  # no half clone left behind

    for missing in (str(tmp_path / "gone"), (tmp_path / "gone").as_uri()):
        with pytest.raises(SourceUnavailable, match=r"repository .*gone"):
            CodeRepo(missing, cache_dir=tmp_path / "cache").head("main")


def test_an_unknown_commit_is_source_unavailable(origin: ConfigRepo, open_code: Open) -> None:
    code = open_code(origin.path)
    for ask in (
        lambda: code.commits(None, "0" * 40),
        lambda: code.changed(origin.head(), "0" * 40),
        lambda: code.checkout("--help", origin.path.parent / "co"),
    ):
        with pytest.raises(SourceUnavailable, match="no commit"):
            ask()


# --- commits and fetch --------------------------------------------------------------------------


def test_commits_after_base_up_to_head_oldest_first(origin: ConfigRepo, open_code: Open) -> None:
    first = git(origin.path, "rev-list", "--max-parents=0", "HEAD")
    code_commit = origin.head()
    shas = []
    for n in range(1, 4):
        origin.write("train.py", f"EPOCHS = {n}\n")
        shas.append(origin.commit(f"Train for {n} epochs"))
    code = open_code(origin.path)

    commits = code.commits(shas[0], shas[2])
    assert [c.sha for c in commits] == shas[1:]
    assert [c.subject for c in commits] == ["Train for 2 epochs", "Train for 3 epochs"]
    assert [c.sha for c in code.commits(None, shas[2])] == [first, code_commit, *shas]
    assert code.commits(shas[2], shas[2]) == []
    assert code.commits(shas[2], shas[0]) == []  # the branch moved back: nothing is after base


def test_commits_follow_the_first_parent(origin: ConfigRepo, open_code: Open) -> None:
    """A merged branch counts as its merge commit: its own commits are not the branch's."""
    base = origin.head()
    git(origin.path, "switch", "-q", "-c", "feature")
    origin.write("src/feature.py", "ON = True\n")
    side = origin.commit("Feature")
    git(origin.path, "switch", "-q", "main")
    origin.write("README.md", "# model, documented\n")
    docs = origin.commit("Docs")
    git(origin.path, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    merge = origin.head()
    code = open_code(origin.path)

    assert [c.sha for c in code.commits(base, merge)] == [docs, merge]
    assert side not in [c.sha for c in code.commits(None, merge)]
    assert code.changed(base, merge) == ["README.md", "src/feature.py"]


def test_fetch_brings_new_commits_into_the_mirror_only(
    origin: ConfigRepo, open_code: Open, kind: str, tmp_path: Path
) -> None:
    git(origin.path, "branch", "dev")
    code = open_code(origin.path)
    old = code.head("main").sha
    origin.write("train.py", "EPOCHS = 9\n")
    new = origin.commit("Train longer")
    git(origin.path, "branch", "-q", "-D", "dev")

    def state() -> list[str]:
        return [
            git(origin.path, "for-each-ref"),
            git(origin.path, "status", "--porcelain", "--untracked-files=all"),
            git(origin.path, "worktree", "list", "--porcelain"),
            git(origin.path, "count-objects", "-v"),
        ]

    if kind == "local":  # read in place: seen at once, fetch has nothing to do
        assert code.head("main").sha == new
        before = state()
        code.fetch()
        assert state() == before
        assert not (tmp_path / "cache").exists()
        return

    assert code.head("main").sha == old  # one snapshot until fetch
    assert code.head("dev").sha == old
    before = state()
    code.fetch()
    assert state() == before  # fetching reads the origin, never writes it
    assert code.head("main").sha == new
    assert [c.sha for c in code.commits(old, new)] == [new]
    with pytest.raises(InvalidInput):  # a deleted branch is pruned
        code.head("dev")
    mirror = objects_of(code, origin, tmp_path)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [mirror.name]
    assert git(mirror, "rev-parse", "--is-bare-repository") == "true"

    again = CodeRepo(code.repo, cache_dir=tmp_path / "cache")  # a restart reuses the mirror
    try:
        assert again.head("main").sha == new
    finally:
        again.close()


# --- changed ------------------------------------------------------------------------------------


def test_changed_counts_edits_adds_deletes_and_both_sides_of_a_rename(
    origin: ConfigRepo, open_code: Open
) -> None:
    origin.write("src/data.py", "ROWS = 10\n" * 20)
    origin.write("notes.txt", "todo\n")
    base = origin.commit("More code")
    origin.write("src/model.py", "WEIGHTS = 2\n")  # edit
    origin.write("src/features.py", "COLUMNS = []\n")  # add
    origin.remove("notes.txt")  # delete
    rename(origin, "src/data.py", "lib/data.py")
    origin.write("lib/data.py", "ROWS = 10\n" * 19 + "ROWS = 11\n")  # ... with an edit
    head = origin.commit("Refactor")
    code = open_code(origin.path)

    changed = code.changed(base, head)
    assert changed == [
        "lib/data.py",
        "notes.txt",
        "src/data.py",
        "src/features.py",
        "src/model.py",
    ]
    assert code.changed(head, head) == []
    assert code.changed(None, head) == sorted(tree(origin, head))
    assert touches(changed, ["lib/**"])  # the new side of the rename
    assert touches(code.changed(base, head), ["src/data.py"])  # and the old one
    assert not touches(changed, ["train.py", "*.md"])


def test_a_pure_rename_counts_both_paths(origin: ConfigRepo, open_code: Open) -> None:
    base = origin.head()
    rename(origin, "train.py", "scripts/train.py")
    head = origin.commit("Move the script")
    code = open_code(origin.path)
    assert code.changed(base, head) == ["scripts/train.py", "train.py"]


# --- checkouts ----------------------------------------------------------------------------------


def test_checkout_is_exactly_the_commit_and_two_live_side_by_side(
    origin: ConfigRepo, open_code: Open, tmp_path: Path
) -> None:
    old = origin.head()
    origin.write("src/model.py", "WEIGHTS = 2\n")
    new = origin.commit("Heavier")
    # Uncommitted edits in the origin's working tree: staged, unstaged and untracked.
    origin.write("train.py", "BROKEN\n")
    origin.write("src/model.py", "WEIGHTS = 3\n")
    git(origin.path, "add", "src/model.py")
    origin.write("scratch.py", "x = 1\n")
    status = git(origin.path, "status", "--porcelain")
    hook = origin.path / ".git" / "hooks" / "post-checkout"  # a checkout runs no hook
    hook.write_text("#!/bin/sh\necho hooked > hooked.txt\n")
    hook.chmod(0o755)
    code = open_code(origin.path)
    one, two = tmp_path / "runs" / "a" / "one", tmp_path / "runs" / "b" / "two"

    code.checkout(new, one)
    code.checkout(old, two)

    assert files(one) == tree(origin, new)
    assert files(one)["src/model.py"] == "WEIGHTS = 2\n"
    assert files(two) == tree(origin, old)
    assert git(one, "rev-parse", "HEAD") == new  # git works inside a checkout
    assert git(one, "status", "--porcelain") == ""
    assert git(origin.path, "status", "--porcelain") == status  # the origin is as it was

    code.remove_checkout(one)
    assert not one.exists()
    assert files(two) == tree(origin, old)
    repo = objects_of(code, origin, tmp_path)
    assert str(one) not in git(repo, "worktree", "list", "--porcelain")
    assert str(two) in git(repo, "worktree", "list", "--porcelain")
    code.remove_checkout(one)  # already gone: nothing to do
    code.remove_checkout(two)
    assert not two.exists()


@pytest.mark.parametrize("crash", ["left-registered", "deleted-by-hand", "locked", "junk"])
def test_checkout_again_over_what_a_crash_left(
    origin: ConfigRepo, open_code: Open, tmp_path: Path, crash: str
) -> None:
    old = origin.head()
    origin.write("train.py", "EPOCHS = 2\n")
    new = origin.commit("Train longer")
    path = tmp_path / "runs" / "one"
    first = open_code(origin.path)
    repo = objects_of(first, origin, tmp_path) if crash != "junk" else None
    if crash == "junk":
        (path / "src").mkdir(parents=True)
        (path / "src" / "half-written.py").write_text("x")
    else:
        first.checkout(old, path)
        (path / "model.pkl").write_bytes(b"output of the crashed run")
        assert repo is not None
        if crash == "deleted-by-hand":
            shutil.rmtree(path)
        if crash == "locked":  # as a crash during `git worktree add` leaves it
            git(repo, "worktree", "lock", "--reason", "initializing", str(path))
    first.close()

    code = open_code(origin.path)  # the restarted controller
    code.checkout(new, path)

    assert files(path) == tree(origin, new)
    listed = git(objects_of(code, origin, tmp_path), "worktree", "list", "--porcelain")
    assert listed.count(f"worktree {path}\n") == 1
    code.remove_checkout(path)
    assert not path.exists()
    listed = git(objects_of(code, origin, tmp_path), "worktree", "list", "--porcelain")
    assert str(path) not in listed


def test_remove_checkout_of_a_never_cloned_mirror_needs_no_network(tmp_path: Path) -> None:
    code = CodeRepo("https://user:secret@127.0.0.1:1/x.git", cache_dir=tmp_path / "cache")
    (tmp_path / "co").mkdir()
    code.remove_checkout(tmp_path / "co")
    assert not (tmp_path / "co").exists()
    code.remove_checkout(tmp_path / "co")


# --- a force-pushed branch ----------------------------------------------------------------------


def test_a_force_pushed_branch(tmp_path: Path, open_code: Open) -> None:
    """The trained commit C is no longer on the branch: A-B-C became A-D-E.

    ``commits`` answers with the rewritten commits after the fork point, ``changed`` with the
    difference between C's tree and E's: what the new head changed since C was trained. A base
    the repository does not have (orphaned and pruned) counts as None: everything. The local
    kind reads the bare remote in place, the mirror kind fetches it.
    """
    work = ConfigRepo(tmp_path / "work", envs=())
    root = work.head()
    work.write("train.py", "EPOCHS = 1\n")
    work.write("src/model.py", "WEIGHTS = 1\n")
    a = work.commit("A")
    work.write("src/model.py", "WEIGHTS = 2\n")
    work.commit("B")
    work.write("README.md", "# C\n")
    c = work.commit("C")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(work.path, "push", "-q", str(remote), "main")
    code = open_code(remote)
    assert code.head("main").sha == c

    git(work.path, "reset", "-q", "--hard", a)
    work.write("train.py", "EPOCHS = 5\n")
    d = work.commit("D")
    work.write("docs/index.md", "# E\n")
    e = work.commit("E")
    git(work.path, "push", "-q", "--force", str(remote), "main")
    code.fetch()

    assert code.head("main").sha == e
    assert [x.subject for x in code.commits(c, e)] == ["D", "E"]
    assert [x.sha for x in code.commits(c, e)] == [d, e]
    assert code.changed(c, e) == ["README.md", "docs/index.md", "src/model.py", "train.py"]
    unknown = "0" * 40
    assert [x.sha for x in code.commits(unknown, e)] == [root, a, d, e]
    assert code.changed(unknown, e) == ["docs/index.md", "src/model.py", "train.py"]
    checkout = tmp_path / "co"
    code.checkout(e, checkout)
    assert files(checkout) == tree(work, e)
