"""Git credentials from the environment, handed to ``git`` without touching disk or argv.

A URL may carry ``user:token@`` itself; otherwise ``MLGITOPS_GIT_USERNAME`` and
``MLGITOPS_GIT_PASSWORD`` (on Kubernetes from the Secret ``mlgitops-git``, keys ``username`` and
``password``) answer Git's HTTP(S) credential requests. They reach ``git`` through a credential
helper declared in the child's environment (``GIT_CONFIG_COUNT``): the helper is a shell function
that echoes the variables, so the values are never in a file, a command line (``ps``) or the
repository's config. Every message that may quote a URL or Git's output goes through ``scrub``.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from controller.redact import redact

USERNAME_VAR = "MLGITOPS_GIT_USERNAME"
PASSWORD_VAR = "MLGITOPS_GIT_PASSWORD"
DEFAULT_USERNAME = "mlgitops"  # token-only hosts accept any user name with a token

# Only on "get": Git also calls helpers to "store" and "erase" what worked or failed.
_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'echo "username=${{{USERNAME_VAR}:-{DEFAULT_USERNAME}}}"; '
    f'echo "password=${{{PASSWORD_VAR}}}"; }}; f'
)


def git_env() -> dict[str, str]:
    """The environment every networked ``git`` command runs with (on top of the process's own).

    Never a prompt: a missing credential fails rather than waits for someone to type it. With
    ``MLGITOPS_GIT_PASSWORD`` set, a credential helper answering from the environment replaces
    whatever helpers the user's configuration names (appended to any ``GIT_CONFIG_*`` given).
    """
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if os.environ.get(PASSWORD_VAR):
        count = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
        for i, value in enumerate(("", _HELPER), start=count):
            env[f"GIT_CONFIG_KEY_{i}"] = "credential.helper"
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        env["GIT_CONFIG_COUNT"] = str(count + 2)
    return env


def scrub(text: str, *urls: str) -> str:
    """``text`` with every credential out: URL userinfo and token parameters (``redact``), and
    the literal secrets of ``urls`` and of the environment wherever they appear (Git can echo
    them outside a URL)."""
    secrets = [os.environ.get(PASSWORD_VAR, "")]
    for url in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        secrets += [unquote(parts.password or ""), parts.password or ""]
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 3:  # shorter would scrub ordinary words; such a secret is no secret
            text = text.replace(secret, "***")
    return redact(text)
