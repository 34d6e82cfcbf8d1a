"""Who is calling: bearer tokens (JWT) become a :class:`Principal`; roles and permissions are checked.

A token is verified with ``ENGINE_JWT_SECRET`` (HS256 only; ``alg: none`` and
any other algorithm are refused), must carry ``exp``, and may carry ``sub``,
``roles``, ``permissions`` and ``tenant_id``. Parameters bound ``in: auth``
read these claims, never anything the client sends in the query or body.
Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from engine.errors import ApiError

ALGORITHMS = ("HS256",)
LEEWAY_S = 30
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="engine"'}


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)


def _names(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(v for v in value.replace(",", " ").split() if v)
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value if v is not None)
    return frozenset()


class Authenticator:
    """Turns request headers into a Principal (or None for an anonymous call)."""

    def __init__(self, jwt_secret: str | None) -> None:
        self._secret = jwt_secret

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        header = headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                "INVALID_TOKEN", "Use 'Authorization: Bearer <token>'", headers=_CHALLENGE
            )
        if not self._secret:
            raise ApiError(
                "INVALID_TOKEN", "This server accepts no bearer tokens", headers=_CHALLENGE
            )
        try:
            claims = jwt.decode(
                token.strip(),
                self._secret,
                algorithms=list(ALGORITHMS),
                leeway=LEEWAY_S,
                options={"require": ["exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError("INVALID_TOKEN", "The token has expired", headers=_CHALLENGE) from None
        except jwt.PyJWTError:
            raise ApiError("INVALID_TOKEN", "The token is not valid", headers=_CHALLENGE) from None
        return Principal(
            subject=str(claims.get("sub", "")),
            roles=_names(claims.get("roles")),
            permissions=_names(claims.get("permissions")),
            claims=claims,
        )


def authorize(
    principal: Principal | None,
    *,
    requires_auth: bool,
    roles: Iterable[str],
    permissions: Iterable[str],
) -> None:
    """Raise 401/403 unless the principal may call the endpoint.

    ``roles``: at least one is needed; ``permissions``: all are needed.
    """
    roles, permissions = tuple(roles), tuple(permissions)
    if principal is None:
        if requires_auth or roles or permissions:
            raise ApiError("AUTHENTICATION_REQUIRED", headers=_CHALLENGE)
        return
    if roles and principal.roles.isdisjoint(roles):
        raise ApiError("INSUFFICIENT_PERMISSIONS", f"Needs one of the roles: {', '.join(roles)}")
    missing = [p for p in permissions if p not in principal.permissions]
    if missing:
        raise ApiError("INSUFFICIENT_PERMISSIONS", f"Needs the permission(s): {', '.join(missing)}")


def mint_token(
    secret: str,
    *,
    subject: str,
    roles: Iterable[str] = (),
    permissions: Iterable[str] = (),
    tenant_id: Any = None,
    ttl_s: int = 3600,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """An HS256 token for development and tests (``python -m engine token``)."""
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": list(roles),
        "permissions": list(permissions),
        "iat": now,
        "exp": now + dt.timedelta(seconds=ttl_s),
    }
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")


def dev_secret(folder: Path) -> str:
    """A per-checkout development secret, created on first use (for `make run` only)."""
    path = folder / "dev-jwt-secret"
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    path.chmod(0o600)
    return value
