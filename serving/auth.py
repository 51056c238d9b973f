"""Bearer tokens: the admin token (``/v1/admin/*``) and the data token (a user's stored behaviours and their
erasure). Compared as bytes in constant time: a header is whatever bytes the client sent (latin-1 decoded by the
server), and ``secrets.compare_digest`` refuses a ``str`` with non-ASCII characters (a 500 before, issue 11 D5)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from pydantic import SecretStr

from serving.errors import ApiError


def _raw(header: str) -> bytes:
    try:
        return header.encode("latin-1")  # the bytes the client sent (ASGI servers decode headers as latin-1)
    except UnicodeEncodeError:
        return header.encode("utf-8", "surrogateescape")


def bearer_matches(authorization: str | None, tokens: Iterable[SecretStr | None]) -> bool:
    """Whether ``authorization`` is ``Bearer <t>`` for one of ``tokens`` (None entries ignored)."""
    if authorization is None:
        return False
    sent = _raw(authorization)
    found = False
    for token in tokens:
        if token is not None:  # compare with every token: the time does not tell which one matched
            found |= secrets.compare_digest(sent, b"Bearer " + token.get_secret_value().encode("utf-8"))
    return found


def require_bearer(authorization: str | None, tokens: Iterable[SecretStr | None], variable: str) -> None:
    """Raise 401 unless ``authorization`` carries one of ``tokens``."""
    if not bearer_matches(authorization, tokens):
        raise ApiError(401, "unauthorized", f"this endpoint needs 'Authorization: Bearer ${variable}'",
                       field="Authorization", headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


def require_data_token(authorization: str | None, data_token: SecretStr | None, admin_token: SecretStr | None) -> None:
    """A user's stored data (their behaviours, and explanations that show them) needs the data token or the admin
    token whenever either is set; with neither set it is open (a local demo)."""
    tokens = (data_token, admin_token)
    if any(t is not None for t in tokens):
        require_bearer(authorization, tokens, "LONGRANK_DATA_TOKEN")
