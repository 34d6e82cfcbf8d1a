"""Who is calling: API keys and bearer tokens become a :class:`Principal`; access is checked.

- ``X-API-Key``: checked against the in-memory :class:`~engine.keys.KeyStore`.
- ``Authorization: Bearer <JWT>``: HS256 with ``ENGINE_JWT_SECRET``, or RS256 /
  ES256 with ``ENGINE_JWT_PUBLIC_KEY``, from an explicit allow-list (never
  ``none``, never an HMAC algorithm with a public key). ``exp`` and a non-empty
  ``sub`` are required, ``nbf`` honoured, 30 s leeway; ``aud`` and ``iss`` are
  checked when configured. Claims: ``sub``, ``roles``, ``permissions``,
  ``tenant_id``.
- Both headers in one request: 400 ``AMBIGUOUS_CREDENTIALS`` (no guessing which
  principal is meant).

A refused credential is answered with a plain 401; why it was refused travels
in ``ApiError.internal`` to the server log (:meth:`Authenticator.log_refusal`) and to
``api_error_logs``, and never contains the token or key.

Parameters bound ``in: auth`` read these claims, never what the client sends
in the query or body. Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from engine.errors import ApiError
from engine.keys import KeyRefused, KeyStore, StoredKey

log = logging.getLogger("engine.auth")

LEEWAY_S = 30
VERIFIED_TOKENS = 10_000  # verified bearer tokens remembered per process (by SHA-256)
MAX_REASON_CHARS = 200
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"}
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="engine"'}


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "jwt"  # jwt | key

    @property
    def identity(self) -> str:
        """Who this is for rate limits and cache keys: a token's sub never equals a key's."""
        return f"{self.kind}|{self.subject}"


def _printable(text: str) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text[:MAX_REASON_CHARS]


def _reason(exc: Exception) -> str:
    """Why PyJWT refused a token, printable and cut short (its messages do not include it)."""
    text = str(exc) if isinstance(exc, jwt.PyJWTError) else f"{type(exc).__name__}: {exc}"
    return _printable(text)


def _names(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(v for v in value.replace(",", " ").split() if v)
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value if v is not None)
    return frozenset()


@dataclass(frozen=True)
class JwtConfig:
    """How bearer tokens are verified; built once from the settings."""

    key: Any = None
    algorithms: tuple[str, ...] = ()
    audience: str | None = None
    issuer: str | None = None

    @classmethod
    def build(
        cls,
        *,
        secret: str | None,
        public_key: str | None,
        algorithms: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> JwtConfig:
        if secret and public_key:
            raise ValueError("set ENGINE_JWT_SECRET or ENGINE_JWT_PUBLIC_KEY, not both")
        wanted = tuple(a.strip() for a in (algorithms or "").split(",") if a.strip())
        if public_key:
            pem = public_key
            if "-----BEGIN" not in pem and Path(pem).is_file():
                pem = Path(pem).read_text()
            allowed = wanted or ("RS256", "ES256")
            bad = [a for a in allowed if a not in PUBLIC_KEY_ALGORITHMS]
            if bad:
                raise ValueError(f"algorithms not allowed with a public key: {', '.join(bad)}")
            try:  # parsed once here: a bad key stops the start, not every request
                key = serialization.load_pem_public_key(pem.encode())
            except (ValueError, TypeError) as exc:
                raise ValueError(f"ENGINE_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
            return cls(key, allowed, audience, issuer)
        if secret:
            allowed = wanted or ("HS256",)
            bad = [a for a in allowed if a not in HMAC_ALGORITHMS]
            if bad:
                raise ValueError(f"algorithms not allowed with a shared secret: {', '.join(bad)}")
            return cls(secret, allowed, audience, issuer)
        return cls()


class Authenticator:
    """Turns request headers into a Principal (or None for an anonymous call)."""

    def __init__(
        self, jwt_config: JwtConfig | str | None = None, keys: KeyStore | None = None
    ) -> None:
        if isinstance(jwt_config, str) or jwt_config is None:
            jwt_config = JwtConfig.build(secret=jwt_config, public_key=None)
        self._jwt = jwt_config
        self._keys = keys
        # SHA-256 of a verified token -> (its principal, the instant it stops being valid):
        # a signature is checked once per token, not once per request; expiry still holds
        self._verified: dict[bytes, tuple[Principal, float]] = {}
        # a stored key (as loaded: a revocation or an edit is another value) -> its principal
        self._key_principals: dict[StoredKey, Principal] = {}

    @staticmethod
    def log_refusal(request_id: str, method: str, path: str, reason: str) -> None:
        """The server-log line of a refused credential (``reason`` never holds the credential)."""
        # the path is the client's: escaped, so it cannot forge log lines
        log.info("%s %s (request %s): %s", method, _printable(path), request_id, reason)

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        api_key = headers.get("x-api-key")
        header = headers.get("authorization")
        if api_key is not None and header is not None:
            raise ApiError(
                "AMBIGUOUS_CREDENTIALS",
                "Send the X-API-Key header or the Authorization header, not both",
            )
        if api_key is not None:
            return self._from_key(api_key)
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                "INVALID_TOKEN",
                "Use 'Authorization: Bearer <token>'",
                headers=_CHALLENGE,
                internal="the Authorization header is not 'Bearer <token>'",
            )
        return self._from_jwt(token.strip())

    def _from_key(self, key: str) -> Principal:
        try:
            if self._keys is None:
                raise KeyRefused("this server has no API key store")
            stored = self._keys.verify(key)
        except KeyRefused as exc:
            raise ApiError(
                "INVALID_TOKEN",
                "The API key is not valid",
                headers=_CHALLENGE,
                internal=f"API key refused: {exc}",
            ) from None
        known = self._key_principals.get(stored)  # the same stored key: the same principal
        if known is not None:
            return known
        claims: dict[str, Any] = {
            "sub": f"key:{stored.name}",
            "roles": list(stored.roles),
            "permissions": list(stored.permissions),
        }
        if stored.tenant_id is not None:
            claims["tenant_id"] = stored.tenant_id
        principal = Principal(
            subject=claims["sub"],
            roles=frozenset(stored.roles),
            permissions=frozenset(stored.permissions),
            claims=claims,
            kind="key",
        )
        if len(self._key_principals) >= VERIFIED_TOKENS:
            self._key_principals.clear()  # keys replaced many times over: start again
        self._key_principals[stored] = principal
        return principal

    def _from_jwt(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode(errors="surrogatepass")).digest()
        known = self._verified.get(digest)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[digest]  # expired since: verified again, and refused
        principal = self._verify_jwt(token)
        verified = self._verified
        if len(verified) >= VERIFIED_TOKENS:
            del verified[next(iter(verified))]  # the oldest first
        try:
            until = float(principal.claims["exp"]) + LEEWAY_S
        except (OverflowError, TypeError, ValueError):  # an exp beyond a float: not cached
            return principal
        verified[digest] = (principal, until)
        return principal

    def _verify_jwt(self, token: str) -> Principal:
        cfg = self._jwt
        if cfg.key is None:
            raise ApiError(
                "INVALID_TOKEN",
                "This server accepts no bearer tokens",
                headers=_CHALLENGE,
                internal="bearer token refused: neither ENGINE_JWT_SECRET nor "
                "ENGINE_JWT_PUBLIC_KEY is set",
            )
        # sub is the identity of rate limits and cache keys: without it, all such tokens are one
        require = ["exp", "sub"]
        if cfg.audience:
            require.append("aud")
        if cfg.issuer:
            require.append("iss")
        try:
            claims = jwt.decode(
                token,
                cfg.key,
                algorithms=list(cfg.algorithms),
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=LEEWAY_S,
                options={"require": require, "verify_aud": bool(cfg.audience)},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # TypeError: a token's algorithm that does not fit the configured key type
            detail = next((d for t, d in _DETAILS if isinstance(exc, t)), "The token is not valid")
            raise _refused(detail, _reason(exc)) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():  # PyJWT < 2.10 lets any through
            raise _refused("The token is not valid", 'the "sub" claim is not a non-empty string')
        return Principal(
            subject=subject,
            roles=_names(claims.get("roles")),
            permissions=_names(claims.get("permissions")),
            claims=claims,
        )


# what the client is told for a refused token; everything else is "The token is not valid"
_DETAILS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired"),
    (jwt.ImmatureSignatureError, "The token is not valid yet"),
    (jwt.InvalidAudienceError, "The token is for another audience or issuer"),
    (jwt.InvalidIssuerError, "The token is for another audience or issuer"),
)


def _refused(detail: str, reason: str) -> ApiError:
    return ApiError(
        "INVALID_TOKEN", detail, headers=_CHALLENGE, internal=f"bearer token refused: {reason}"
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
