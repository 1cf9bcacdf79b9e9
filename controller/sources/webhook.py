"""Git push webhooks, as both runtimes receive them: the signature and the pushed repository.

A push tells a controller to look now instead of at its next poll; it never carries what to
deploy (the controller reads Git itself), so a forged or replayed push can at worst cause an
early poll. Still, only a body signed with the shared token (GitHub's ``X-Hub-Signature-256``;
GitLab and Gitea send the same header when configured so) is acted on.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from controller.redact import redact

__all__ = ["MAX_BODY", "push_urls", "same_repo", "verify_signature"]

MAX_BODY = 1024 * 1024  # a push event is a few KiB; anything larger is not one
SIGNATURE_HEADER = "X-Hub-Signature-256"


def verify_signature(token: str, body: bytes, header: str | None) -> bool:
    """GitHub-style ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


def push_urls(body: bytes) -> set[str]:
    """The URLs a push payload gives its repository (GitHub, GitLab and Gitea field names);
    empty when the body names none."""
    try:
        payload = json.loads(body)
    except ValueError:
        return set()
    repo = payload.get("repository") if isinstance(payload, dict) else None
    if not isinstance(repo, dict):
        return set()
    fields = ("clone_url", "git_url", "ssh_url", "html_url", "url", "git_http_url", "git_ssh_url")
    return {str(repo[f]) for f in fields if isinstance(repo.get(f), str)}


def same_repo(repo: str, urls: set[str]) -> bool:
    """Whether ``repo`` (as a document names it) is one of ``urls``, up to ``.git``, a trailing
    slash and credentials."""

    def norm(url: str) -> str:
        url = redact(url).replace("***@", "")
        return url.rstrip("/").removesuffix(".git").lower()

    return norm(repo) in {norm(u) for u in urls}
