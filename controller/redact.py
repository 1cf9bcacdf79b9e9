"""Keep credentials out of everything we print, log or store.

URLs may carry ``user:token@``; MLflow and Git error messages echo URLs back. Every message that
leaves an adapter passes through ``redact`` first.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@\s]+@")
_TOKEN_PARAM = re.compile(r"(?i)((?:token|password|secret|access_key)=)[^&\s]+")


def redact(text: str) -> str:
    """Replace the userinfo of every URL and any ``token=...`` parameter with ``***``."""
    if "@" not in text and "=" not in text:  # neither can match: the common case, made cheap
        return text
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _TOKEN_PARAM.sub(r"\1***", text)
