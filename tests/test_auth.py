"""Authentication and authorisation over HTTP, against a real PostgreSQL.

Bearer tokens (HS256 with a secret; RS256 / ES256 with a public key; exp, nbf,
aud and iss; the ``none`` and algorithm-confusion attacks), API keys (created,
used, expired, revoked through the command line, never stored in plain text),
roles and permissions, tenant isolation through ``in: auth`` parameters, and
that a 401 or 403 is answered without taking a database connection. A token
must name its subject; a key and a token together are ambiguous; the reason a
credential was refused reaches the server log and ``api_error_logs``, never the
credential itself.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine import keys
from tests.engine_server import JWT_SECRET, EngineClient
from tests.helpers import add_endpoint, assert_problem, refusing_connections, run_cli, serve
from tests.pg import DB

Maker = Callable[..., EngineClient]

CAMERAS = "/api/v1/cameras"
OTHER_SECRET = "another-secret-that-is-also-long-enough-for-hs256"
AUDIENCE = "engine-api"
# every detail a refused credential may be answered with (the reason goes to the logs only)
PLAIN_DETAILS = {
    "The token has expired",
    "The token is not valid yet",
    "The token is for another audience or issuer",
    "The token is not valid",
    "The API key is not valid",
}
ISSUER = "https://id.example.test"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT assembled by hand (no library checks on what it may contain)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    return f"{head}.{body}.{b64url(signature)}"


def hs256_by_hand(payload: dict[str, Any], secret: bytes) -> str:
    """HS256 computed with ``hmac`` (PyJWT refuses a PEM as an HMAC secret)."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(signature)}"


def claims(tenant: Any = 1, ttl_s: int = 600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {"sub": "tester", "iat": now, "exp": now + ttl_s, **extra}
    if tenant is not None:
        out["tenant_id"] = tenant
    return out


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(response: httpx.Response, code: str = "INVALID_TOKEN") -> dict[str, Any]:
    body = assert_problem(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
    return body


def assert_403(response: httpx.Response) -> dict[str, Any]:
    body = assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert "data" not in body
    return body


def camera_ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [c["camera_id"] for c in response.json()["data"]]


def active_cameras(db: DB, tenant: int) -> list[int]:
    rows = db.fetch(
        "SELECT camera_id FROM camera_configurations WHERE tenant_id = $1 AND is_active "
        "ORDER BY camera_id",
        tenant,
    )
    return [r["camera_id"] for r in rows]


def pem_of(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def cli_create_key(url: str, name: str, *options: str) -> str:
    result = run_cli("keys", "create", "--name", name, *options, url=url)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("ek_") and "\n" not in key, result.stdout
    return key


def create_key(url: str, name: str, **kwargs: Any) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(url)
        try:
            return await keys.create_key(conn, name, **kwargs)
        finally:
            await conn.close()

    return asyncio.run(go())


def poll(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture()
def reports(db: DB) -> DB:
    """A table of two tenants' rows, and endpoints guarded by roles and permissions."""
    db.execute(
        "CREATE TABLE auth_reports (id int PRIMARY KEY, tenant_id int, title text);"
        "INSERT INTO auth_reports VALUES (1, 1, 'one'), (2, 2, 'two'), (3, 1, 'three')"
    )
    add_endpoint(
        db,
        "/t/reports",
        sql="SELECT id, title FROM auth_reports ORDER BY id",
        requires_auth=True,
        required_permissions=["reports:read", "reports:export"],
    )
    add_endpoint(
        db,
        "/t/analysis",
        sql="SELECT 'ok' AS answer",
        result={"shape": "scalar"},
        requires_auth=True,
        required_roles=["analyst", "admin"],
        required_permissions=["reports:read"],
    )
    add_endpoint(
        db,
        "/t/staff",
        sql="SELECT 'staff' AS answer",
        result={"shape": "scalar"},
        requires_auth=False,  # roles alone still demand a caller
        required_roles=["staff"],
    )
    add_endpoint(db, "/t/public", sql="SELECT 'hello' AS answer", result={"shape": "scalar"})
    # a template that would leak every tenant's rows if the tenant were ever bound as NULL
    add_endpoint(
        db,
        "/t/mine",
        sql="SELECT id, title FROM auth_reports WHERE $1::int IS NULL OR tenant_id = $1 "
        "ORDER BY id",
        params=[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"}],
        requires_auth=True,
    )
    db.execute("CREATE TABLE auth_notes (tenant_id int, note text)")
    add_endpoint(
        db,
        "/t/notes",
        "POST",
        "INSERT INTO auth_notes VALUES ($1, $2) RETURNING tenant_id, note",
        params=[
            {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"},
            {"name": "note", "in": "body", "type": "string", "required": True},
        ],
        result={"shape": "object", "status": 201},
        requires_auth=True,
    )
    return db


# ---------------------------------------------------------------------------
# bearer tokens: what is refused, what is accepted
# ---------------------------------------------------------------------------


def test_no_credentials_is_401_with_a_challenge(client: EngineClient) -> None:
    body = assert_401(client.get(CAMERAS), "AUTHENTICATION_REQUIRED")
    assert "data" not in body
    assert_401(client.get(f"{CAMERAS}/1"), "AUTHENTICATION_REQUIRED")
    assert_401(
        client.post(f"{CAMERAS}/1/health", json={"status": "online"}), "AUTHENTICATION_REQUIRED"
    )
    # an empty key header is a bad credential, not an anonymous call
    assert_401(client.get(CAMERAS, headers={"X-API-Key": ""}))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0",  # two segments only
        "Bearer",
        "Bearer .",
        "Basic dGVzdGVyOnNlY3JldA==",
        "Token abc",
    ],
)
def test_garbage_and_other_schemes_are_401(client: EngineClient, authorization: str) -> None:
    assert_401(client.get(CAMERAS, headers={"Authorization": authorization}))


def test_a_basic_header_carrying_a_valid_token_is_still_refused(client: EngineClient) -> None:
    token = client.token(tenant=1)
    assert_401(client.get(CAMERAS, headers={"Authorization": f"Basic {token}"}))
    assert client.get(CAMERAS, headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_alg_none_tokens_are_refused(client: EngineClient) -> None:
    payload = claims(tenant=1, roles=["camera_admin"])
    forged = [
        raw_token({"alg": "none"}, payload),
        raw_token({"alg": "none", "typ": "JWT"}, payload),
        raw_token({"alg": "None"}, payload),
        raw_token({"alg": "NONE"}, payload),
        raw_token({"alg": "none"}, payload)[:-1],  # no trailing dot
        raw_token({"alg": "none"}, payload, b"whatever"),
        raw_token({"alg": "HS256"}, payload),  # claims HS256, carries no signature
        jwt.encode(payload, None, algorithm="none"),
    ]
    for token in forged:
        assert_401(client.get(CAMERAS, headers=bearer(token)))
    # the same claims, properly signed, are accepted
    assert client.get(CAMERAS, headers=bearer(jwt.encode(payload, JWT_SECRET))).status_code == 200


def test_tokens_signed_with_another_key_or_tampered_are_refused(client: EngineClient) -> None:
    payload = claims(tenant=1)
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(payload, OTHER_SECRET))))
    # the right secret, but an algorithm outside the allow-list (HS256 only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT finds the test secret short for HS512
        hs512 = jwt.encode(payload, JWT_SECRET, "HS512")
    assert_401(client.get(CAMERAS, headers=bearer(hs512)))
    # a valid token whose payload was swapped for another tenant's keeps its old signature
    head, _, signature = client.token(tenant=1).split(".")
    other = b64url(json.dumps(claims(tenant=2)).encode())
    assert_401(client.get(CAMERAS, headers=bearer(f"{head}.{other}.{signature}")))


def test_expiry_is_checked_with_a_30_second_leeway(client: EngineClient, db: DB) -> None:
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1, ttl_s=-120)))
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1, ttl_s=-45)))
    # 10 s past exp is within the leeway (clock skew between issuer and engine)
    r = client.get(CAMERAS, headers=client.auth(tenant=1, ttl_s=-10))
    assert camera_ids(r) == active_cameras(db, 1)


def test_a_token_without_exp_is_refused(client: EngineClient) -> None:
    payload = claims(tenant=1)
    del payload["exp"]
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(payload, JWT_SECRET))))
    # exp must be a number
    payload["exp"] = "tomorrow"
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(payload, JWT_SECRET))))


@pytest.mark.parametrize("sub", ["absent", "", "   ", 42, None, ["a"]])
def test_a_token_without_a_subject_is_refused(client: EngineClient, sub: Any) -> None:
    payload = claims(tenant=1)
    if sub == "absent":
        del payload["sub"]
    else:
        payload["sub"] = sub
    # signed by hand: PyJWT would refuse to encode some of these
    assert_401(client.get(CAMERAS, headers=bearer(hs256_by_hand(payload, JWT_SECRET.encode()))))
    payload["sub"] = "someone"
    r = client.get(CAMERAS, headers=bearer(hs256_by_hand(payload, JWT_SECRET.encode())))
    assert r.status_code == 200, r.text


def test_a_key_and_a_token_together_are_ambiguous(client: EngineClient, db_url: str) -> None:
    key = create_key(db_url, "both", tenant_id=1)
    assert client.wait_for("GET", CAMERAS, 200, headers={"X-API-Key": key}).status_code == 200
    token = client.auth(tenant=1)
    for headers in (
        {"X-API-Key": key, **token},
        {"X-API-Key": "ek_nope_nope", **token},
        {"X-API-Key": key, "Authorization": "Basic dGVzdGVyOnNlY3JldA=="},
        {"X-API-Key": "", **token},
    ):
        body = assert_problem(client.get(CAMERAS, headers=headers), 400, "AMBIGUOUS_CREDENTIALS")
        assert "data" not in body
    r = client.get(CAMERAS, headers={"X-API-Key": key, **token, "Accept-Language": "vi"})
    body = assert_problem(r, 400, "AMBIGUOUS_CREDENTIALS")
    assert r.headers["content-language"] == "vi"
    # each alone is accepted
    assert client.get(CAMERAS, headers={"X-API-Key": key}).status_code == 200
    assert client.get(CAMERAS, headers=token).status_code == 200


def test_not_before_is_honoured_with_the_leeway(client: EngineClient) -> None:
    now = int(time.time())
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1, nbf=now + 120)))
    assert client.get(CAMERAS, headers=client.auth(tenant=1, nbf=now + 10)).status_code == 200
    assert client.get(CAMERAS, headers=client.auth(tenant=1, nbf=now - 60)).status_code == 200


def test_audience_is_required_when_configured(make_client: Maker, db: DB) -> None:
    client = make_client(jwt_audience=AUDIENCE)
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1)))  # no aud
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1, aud="another-api")))
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1, aud=["a", "b"])))
    r = client.get(CAMERAS, headers=client.auth(tenant=1, aud=AUDIENCE))
    assert camera_ids(r) == active_cameras(db, 1)
    r = client.get(CAMERAS, headers=client.auth(tenant=2, aud=["another-api", AUDIENCE]))
    assert camera_ids(r) == active_cameras(db, 2)


def test_issuer_is_required_when_configured(make_client: Maker) -> None:
    client = make_client(jwt_issuer=ISSUER)
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1)))  # no iss
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1, iss="https://evil.example")))
    assert_401(client.get(CAMERAS, headers=client.auth(tenant=1, iss=ISSUER + "/")))
    assert client.get(CAMERAS, headers=client.auth(tenant=1, iss=ISSUER)).status_code == 200


def test_without_a_configured_key_no_bearer_token_is_accepted(make_client: Maker) -> None:
    client = make_client(jwt_secret=None)
    body = assert_401(client.get(CAMERAS, headers=client.auth(tenant=1)))
    assert "no bearer tokens" in body["detail"]


def test_rs256_with_a_public_key(make_client: Maker, db: DB, rsa_key: rsa.RSAPrivateKey) -> None:
    pem = pem_of(rsa_key)
    client = make_client(
        jwt_secret=None,
        jwt_public_key=pem,
        jwt_algorithms="RS256",
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
    )
    good = claims(tenant=2, aud=AUDIENCE, iss=ISSUER)
    r = client.get(CAMERAS, headers=bearer(jwt.encode(good, rsa_key, algorithm="RS256")))
    assert camera_ids(r) == active_cameras(db, 2)

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(good, stranger, algorithm="RS256"))))
    # RS512 with the right key is not on the allow-list
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(good, rsa_key, algorithm="RS512"))))
    # the engine's own HS256 test secret means nothing to this server
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(good, JWT_SECRET))))
    # algorithm confusion: HS256 keyed with the public key's PEM text, which anyone may know
    for secret in (pem, pem.strip(), pem.replace("\n", "\r\n")):
        token = hs256_by_hand(good, secret.encode())
        assert_401(client.get(CAMERAS, headers=bearer(token)))
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert_401(client.get(CAMERAS, headers=bearer(hs256_by_hand(good, der))))
    assert_401(client.get(CAMERAS, headers=bearer(raw_token({"alg": "none"}, good))))
    # aud and iss are still checked on public-key tokens
    wrong_aud = jwt.encode({**good, "aud": "x"}, rsa_key, algorithm="RS256")
    assert_401(client.get(CAMERAS, headers=bearer(wrong_aud)))


def test_es256_with_a_public_key_file(
    make_client: Maker, db: DB, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Any
) -> None:
    path = tmp_path / "issuer.pem"
    path.write_text(pem_of(ec_key))
    client = make_client(jwt_secret=None, jwt_public_key=str(path))  # RS256,ES256 by default
    payload = claims(tenant=1)
    r = client.get(CAMERAS, headers=bearer(jwt.encode(payload, ec_key, algorithm="ES256")))
    assert camera_ids(r) == active_cameras(db, 1)
    # an RS256 token against an EC key: refused (401), not a crash (500)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(payload, stranger, "RS256"))))
    other_ec = ec.generate_private_key(ec.SECP256R1())
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(payload, other_ec, "ES256"))))
    assert_401(client.get(CAMERAS, headers=bearer(hs256_by_hand(payload, path.read_bytes()))))


def test_es256_is_refused_when_not_allowed(
    make_client: Maker, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = make_client(jwt_secret=None, jwt_public_key=pem_of(ec_key), jwt_algorithms="RS256")
    assert_401(client.get(CAMERAS, headers=bearer(jwt.encode(claims(), ec_key, "ES256"))))


def test_unsafe_jwt_settings_stop_the_engine_from_starting(
    make_client: Maker, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = pem_of(rsa_key)
    with pytest.raises(ValueError, match="HS256"):
        make_client(jwt_secret=None, jwt_public_key=pem, jwt_algorithms="RS256,HS256")
    with pytest.raises(ValueError, match="none"):
        make_client(jwt_secret=None, jwt_public_key=pem, jwt_algorithms="none")
    with pytest.raises(ValueError, match="RS256"):
        make_client(jwt_algorithms="RS256")  # a shared secret with a public-key algorithm
    with pytest.raises(ValueError, match="not both"):
        make_client(jwt_public_key=pem)  # the default test secret is set too


# ---------------------------------------------------------------------------
# API keys
# ---------------------------------------------------------------------------


def test_api_key_from_the_cli_binds_its_tenant_and_roles(
    client: EngineClient, db: DB, db_url: str
) -> None:
    # created while the engine runs: NOTIFY engine_keys makes it usable without a restart
    key = cli_create_key(db_url, "store-2", "--roles", "operator,viewer", "--tenant", "2")
    headers = {"X-API-Key": key}
    r = client.wait_for("GET", CAMERAS, 200, headers=headers)
    assert camera_ids(r) == active_cameras(db, 2)
    # the client cannot choose another tenant
    assert camera_ids(client.get(CAMERAS, params={"tenant_id": 1}, headers=headers)) == [5, 6]
    assert_problem(client.get(f"{CAMERAS}/1", headers=headers), 404, "CAMERA_NOT_FOUND")
    # the key's roles: operator may report health, not create cameras
    new = {"camera_name": "Key Cam", "camera_type": "IP", "stream_url": "http://k/1"}
    assert_403(client.post(CAMERAS, json=new, headers=headers))
    r = client.post(f"{CAMERAS}/5/health", json={"status": "online"}, headers=headers)
    assert r.status_code == 201, r.text
    assert_problem(
        client.post(f"{CAMERAS}/1/health", json={"status": "online"}, headers=headers),
        404,
        "CAMERA_NOT_FOUND",
    )
    assert (
        db.fetchval("SELECT count(*) FROM camera_configurations WHERE camera_name = 'Key Cam'") == 0
    )


def test_wrong_api_keys_are_401(client: EngineClient, db_url: str) -> None:
    key = create_key(db_url, "real", roles=["camera_admin"], tenant_id=1)
    assert client.wait_for("GET", CAMERAS, 200, headers={"X-API-Key": key}).status_code == 200
    _, prefix, secret = key.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    wrong = [
        "not-a-key",
        "ek_000000000000_" + "x" * 43,  # well-formed, unknown prefix
        f"ek_{prefix}_{flipped}",  # the right prefix, a wrong secret
        f"ek_{prefix}_",
        f"ek_{prefix}_{secret}x",
        f"ek_{prefix}_{secret[:-1]}",
        f"ek_{prefix.upper()}_{secret}",
        key.replace("ek_", "EK_", 1),
        secret,
        "ek__" + secret,
    ]
    for value in wrong:
        assert_401(client.get(CAMERAS, headers={"X-API-Key": value}))
    # a bad key is not overlooked in favour of a valid bearer token
    both = {"X-API-Key": wrong[2], **client.auth(tenant=1)}
    assert_problem(client.get(CAMERAS, headers=both), 400, "AMBIGUOUS_CREDENTIALS")


def test_expired_api_keys_are_401(make_client: Maker, db_url: str, db: DB) -> None:
    now = dt.datetime.now(dt.UTC)
    old = create_key(db_url, "old", tenant_id=1, expires_at=now - dt.timedelta(minutes=1))
    soon = create_key(db_url, "soon", tenant_id=1, expires_at=now + dt.timedelta(seconds=4))
    client = make_client()
    assert_401(client.get(CAMERAS, headers={"X-API-Key": old}))
    # loaded while still valid, refused from memory once its time has passed
    assert camera_ids(client.get(CAMERAS, headers={"X-API-Key": soon})) == active_cameras(db, 1)
    r = client.wait_for("GET", CAMERAS, 401, timeout_s=10, headers={"X-API-Key": soon})
    assert_401(r)
    listing = run_cli("keys", "list", url=db_url)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "expired" in lines["old"] and "expired" in lines["soon"]


def test_keys_expiring_at_infinity_or_past_year_9999_never_expire(
    make_client: Maker, db_url: str, db: DB
) -> None:
    forever = create_key(db_url, "forever", tenant_id=1)
    far = create_key(db_url, "far", tenant_id=1)
    gone = create_key(db_url, "gone", tenant_id=1)
    db.execute("UPDATE api_keys SET expires_at = 'infinity' WHERE name = 'forever'")
    db.execute("UPDATE api_keys SET expires_at = '12000-01-01' WHERE name = 'far'")
    db.execute("UPDATE api_keys SET expires_at = '-infinity' WHERE name = 'gone'")
    client = make_client()
    for key in (forever, far):
        assert camera_ids(client.get(CAMERAS, headers={"X-API-Key": key})) == active_cameras(db, 1)
    assert_401(client.get(CAMERAS, headers={"X-API-Key": gone}))
    listing = run_cli("keys", "list", url=db_url)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "active" in lines["forever"] and "expired" in lines["gone"]


def test_revoking_a_key_reaches_the_running_engine(client: EngineClient, db_url: str) -> None:
    doomed = cli_create_key(db_url, "doomed", "--tenant", "1")
    kept = cli_create_key(db_url, "kept", "--tenant", "1")
    for key in (doomed, kept):
        assert client.wait_for("GET", CAMERAS, 200, headers={"X-API-Key": key}).status_code == 200

    revoked = run_cli("keys", "revoke", "doomed", url=db_url)
    assert revoked.returncode == 0, revoked.stderr
    assert poll(
        lambda: client.get(CAMERAS, headers={"X-API-Key": doomed}).status_code == 401,
        timeout_s=3,
    ), "the running engine still accepts a revoked key"
    assert_401(client.get(CAMERAS, headers={"X-API-Key": doomed}))
    assert client.get(CAMERAS, headers={"X-API-Key": kept}).status_code == 200

    listing = run_cli("keys", "list", url=db_url)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
    assert lines["doomed"][1] == "revoked" and lines["kept"][1] == "active"
    again = run_cli("keys", "revoke", "doomed", url=db_url)
    assert again.returncode == 1 and "no active key" in again.stderr


def test_the_key_is_never_stored_or_listed(db: DB, db_url: str) -> None:
    key = cli_create_key(db_url, "secretive", "--roles", "camera_admin", "--tenant", "1")
    _, prefix, secret = key.split("_", 2)
    row = db.fetchrow("SELECT * FROM api_keys WHERE name = 'secretive'")
    stored = " ".join(str(v) for v in row.values())
    assert row["key_prefix"] == prefix
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    # not the key, not its secret part, not even a piece of the secret
    for size in (8, len(secret)):
        for start in range(len(secret) - size + 1):
            assert secret[start : start + size] not in stored
    listing = run_cli("keys", "list", url=db_url)
    assert "secretive" in listing.stdout
    assert secret[:8] not in listing.stdout + listing.stderr
    duplicate = run_cli("keys", "create", "--name", "secretive", url=db_url)
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr


def test_last_used_at_is_written_off_the_request_path(
    make_client: Maker, db_url: str, db: DB
) -> None:
    used = create_key(db_url, "used", tenant_id=1)
    create_key(db_url, "idle", tenant_id=1)
    client = make_client()
    assert client.get(CAMERAS, headers={"X-API-Key": used}).status_code == 200
    assert db.fetchval("SELECT last_used_at FROM api_keys WHERE name = 'used'") is None
    services = client.engine.services
    client.engine.run(services.authenticator._keys.flush(services.db.write))
    last = {r["name"]: r["last_used_at"] for r in db.fetch("SELECT * FROM api_keys")}
    assert last["idle"] is None
    assert last["used"] is not None
    assert abs((dt.datetime.now(dt.UTC) - last["used"]).total_seconds()) < 60


# ---------------------------------------------------------------------------
# roles and permissions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "roles",
    [(), ("viewer", "operator"), ("CAMERA_ADMIN",), ("camera_admin ",)],
)
def test_a_principal_lacking_every_required_role_is_403(
    client: EngineClient, db: DB, roles: tuple[str, ...]
) -> None:
    before = db.fetchval("SELECT count(*) FROM camera_configurations")
    new = {"camera_name": "Forbidden Cam", "camera_type": "IP", "stream_url": "http://f/1"}
    r = client.post(CAMERAS, json=new, headers=client.auth(tenant=1, roles=roles))
    body = assert_403(r)
    assert "camera_admin" in body["detail"]
    assert "www-authenticate" not in r.headers
    assert_403(client.delete(f"{CAMERAS}/1", headers=client.auth(tenant=1, roles=roles)))
    assert db.fetchval("SELECT count(*) FROM camera_configurations") == before
    assert db.fetchval("SELECT is_active FROM camera_configurations WHERE camera_id = 1")


def test_one_of_several_roles_is_enough(client: EngineClient, db: DB) -> None:
    as_string = bearer(jwt.encode(claims(tenant=1, roles="viewer operator"), JWT_SECRET))
    for headers in [
        client.auth(tenant=1, roles=("operator",)),
        client.auth(tenant=1, roles=("camera_admin",)),
        client.auth(tenant=1, roles=("viewer", "operator", "camera_admin")),
        as_string,  # a space-separated roles claim is read as a set of names
    ]:
        r = client.post(f"{CAMERAS}/2/health", json={"status": "online"}, headers=headers)
        assert r.status_code == 201, r.text
    new = {"camera_name": "Allowed Cam", "camera_type": "IP", "stream_url": "http://a/1"}
    r = client.post(CAMERAS, json=new, headers=client.auth(tenant=1, roles=("camera_admin",)))
    assert r.status_code == 201, r.text
    assert (
        db.fetchval(
            "SELECT tenant_id FROM camera_configurations WHERE camera_name = $1", "Allowed Cam"
        )
        == 1
    )


def test_every_required_permission_is_needed(reports: DB, make_client: Maker) -> None:
    client = serve(make_client)
    for perms in (
        (),
        ("reports:read",),
        ("reports:export",),
        ("reports:*",),
        ("REPORTS:READ", "reports:export"),
    ):
        body = assert_403(client.get("/t/reports", headers=client.auth(permissions=perms)))
        assert "reports:" in body["detail"]
    for perms in (("reports:read", "reports:export"), ("reports:export", "reports:read", "other")):
        r = client.get("/t/reports", headers=client.auth(permissions=perms))
        assert r.status_code == 200, r.text
        assert [row["id"] for row in r.json()] == [1, 2, 3]
    # roles do not stand in for permissions
    r = client.get("/t/reports", headers=client.auth(roles=("reports:read", "reports:export")))
    assert_403(r)


def test_roles_and_permissions_are_both_checked(reports: DB, make_client: Maker) -> None:
    client = serve(make_client)
    assert_403(client.get("/t/analysis", headers=client.auth(roles=("analyst",))))
    assert_403(client.get("/t/analysis", headers=client.auth(permissions=("reports:read",))))
    for roles in (("analyst",), ("admin",)):
        r = client.get(
            "/t/analysis", headers=client.auth(roles=roles, permissions=("reports:read",))
        )
        assert r.status_code == 200 and r.json() == "ok", r.text
    # an API key's roles and permissions count the same
    key = create_key(reports.url, "analyst-key", roles=["analyst"], permissions=["reports:read"])
    r = client.wait_for("GET", "/t/analysis", 200, headers={"X-API-Key": key})
    assert r.json() == "ok"
    bare = create_key(reports.url, "bare-key", roles=["analyst"])
    r = client.wait_for("GET", "/t/analysis", 403, headers={"X-API-Key": bare})
    assert_403(r)


def test_roles_on_a_public_row_still_need_a_caller(reports: DB, make_client: Maker) -> None:
    client = serve(make_client)
    assert_401(client.get("/t/staff"), "AUTHENTICATION_REQUIRED")
    assert_403(client.get("/t/staff", headers=client.auth(roles=("guest",))))
    assert client.get("/t/staff", headers=client.auth(roles=("staff",))).json() == "staff"
    # a public endpoint answers anonymous callers, but a bad credential is never ignored
    assert client.get("/t/public").json() == "hello"
    assert_401(client.get("/t/public", headers=bearer("garbage")))
    assert_401(client.get("/t/public", headers={"X-API-Key": "ek_nope_nope"}))


# ---------------------------------------------------------------------------
# tenant isolation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["absent", None, "1 OR 1=1", True, [1, 2]])
def test_without_a_usable_tenant_claim_nothing_is_read(
    reports: DB, make_client: Maker, tenant: Any
) -> None:
    client = serve(make_client)
    payload = claims(tenant=None)
    if tenant != "absent":
        payload["tenant_id"] = tenant
    headers = bearer(jwt.encode(payload, JWT_SECRET))
    assert_403(client.get(CAMERAS, headers=headers))
    assert_403(client.get(f"{CAMERAS}/1", headers=headers))
    # the template would return every tenant's rows for a NULL tenant: it never runs
    body = assert_403(client.get("/t/mine", params={"tenant_id": 1}, headers=headers))
    assert "one" not in json.dumps(body) and "two" not in json.dumps(body)


def test_a_tenantless_api_key_reads_nothing(reports: DB, make_client: Maker) -> None:
    key = create_key(reports.url, "global", roles=["camera_admin"])
    client = serve(make_client)
    assert_403(client.get(CAMERAS, headers={"X-API-Key": key}))
    assert_403(client.get("/t/mine", headers={"X-API-Key": key}))


def test_client_tenant_id_never_overrides_the_claim(reports: DB, make_client: Maker) -> None:
    db = reports
    client = serve(make_client)
    admin1 = client.auth(tenant=1, roles=("camera_admin",))
    tenant_1 = active_cameras(db, 1)

    # reads: ?tenant_id=2 changes nothing
    assert camera_ids(client.get(CAMERAS, params={"tenant_id": 2}, headers=admin1)) == tenant_1
    assert_problem(
        client.get(f"{CAMERAS}/5", params={"tenant_id": 2}, headers=admin1), 404, "CAMERA_NOT_FOUND"
    )
    r = client.get("/t/mine", params={"tenant_id": 2}, headers=client.auth(tenant=1))
    assert [row["id"] for row in r.json()] == [1, 3]

    # writes: ?tenant_id=2 on the seeded POST still creates tenant 1's camera
    new = {"camera_name": "Query Tenant Cam", "camera_type": "IP", "stream_url": "http://q/1"}
    r = client.post(CAMERAS, params={"tenant_id": 2}, json=new, headers=admin1)
    assert r.status_code == 201, r.text
    owner = "SELECT tenant_id FROM camera_configurations WHERE camera_name = $1"
    assert db.fetchval(owner, "Query Tenant Cam") == 1
    # a body tenant_id is not a field of the closed camera schema: rejected, nothing written
    body_new = {**new, "camera_name": "Body Tenant Cam", "tenant_id": 2}
    r = client.post(CAMERAS, params={"tenant_id": 2}, json=body_new, headers=admin1)
    assert_problem(r, 400, "VALIDATION_ERROR")
    assert db.fetchval(owner, "Body Tenant Cam") is None
    # a PUT naming tenant 2 neither moves the camera nor reaches tenant 2's camera
    r = client.put(f"{CAMERAS}/1", params={"tenant_id": 2}, json={"location": "L"}, headers=admin1)
    assert r.status_code == 200, r.text
    assert_problem(
        client.put(f"{CAMERAS}/5", params={"tenant_id": 2}, json={"location": "X"}, headers=admin1),
        404,
        "CAMERA_NOT_FOUND",
    )
    assert db.fetchval("SELECT tenant_id FROM camera_configurations WHERE camera_id = 1") == 1
    assert db.fetchval("SELECT location FROM camera_configurations WHERE camera_id = 5") != "X"
    # an open body: tenant_id in the query and the body is ignored, the claim is written
    r = client.post(
        "/t/notes",
        params={"tenant_id": 2},
        json={"tenant_id": 2, "note": "hi"},
        headers=client.auth(tenant=1),
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"tenant_id": 1, "note": "hi"}
    assert db.fetch("SELECT tenant_id, note FROM auth_notes") == [(1, "hi")]
    assert active_cameras(db, 2) == [5, 6]


def test_two_tenants_see_disjoint_cameras(client: EngineClient, db: DB) -> None:
    one = camera_ids(client.get(CAMERAS, headers=client.auth(sub="same", tenant=1)))
    two = camera_ids(client.get(CAMERAS, headers=client.auth(sub="same", tenant=2)))
    assert one == active_cameras(db, 1) and two == active_cameras(db, 2)
    assert one and two and not set(one) & set(two)
    # the camera list is cached per caller: the same subject of another tenant gets its own
    again = camera_ids(client.get(CAMERAS, headers=client.auth(sub="same", tenant=1)))
    assert again == one
    # and no tenant reaches the other's cameras by id
    for camera in two:
        r = client.get(f"{CAMERAS}/{camera}", headers=client.auth(tenant=1))
        assert_problem(r, 404, "CAMERA_NOT_FOUND")
    r = client.get(f"{CAMERAS}/{two[0]}", headers=client.auth(tenant=2))
    assert r.status_code == 200 and r.json()["camera_id"] == two[0]


# ---------------------------------------------------------------------------
# 401 and 403 need no database
# ---------------------------------------------------------------------------


def test_401_and_403_are_answered_while_the_database_refuses_connections(
    reports: DB, make_client: Maker, pg_url: str, db_url: str
) -> None:
    key = create_key(db_url, "no-db", tenant_id=1)
    client = serve(make_client)
    valid = client.auth(tenant=1, permissions=("reports:read", "reports:export"))
    assert client.get("/t/reports", headers=valid).status_code == 200
    with refusing_connections(pg_url, db_url):
        # a valid request needs the database, and says so
        assert_problem(client.get("/t/mine", headers=valid), 503, "DATABASE_CONNECTION_ERROR")
        # refusals are decided from the request alone
        assert_401(client.get("/t/reports"), "AUTHENTICATION_REQUIRED")
        assert_401(client.get("/t/reports", headers=bearer("garbage")))
        assert_401(client.get("/t/reports", headers=client.auth(ttl_s=-300)))
        assert_401(client.get("/t/reports", headers={"X-API-Key": "ek_abc_def"}))
        assert_403(client.get("/t/reports", headers=client.auth(permissions=("reports:read",))))
        admin_less = client.auth(tenant=1, roles=("operator",))
        new = {"camera_name": "Down Cam", "camera_type": "IP", "stream_url": "http://d/1"}
        assert_403(client.post(CAMERAS, json=new, headers=admin_less))
        assert_403(client.get(CAMERAS, headers=client.auth(tenant=None)))
        assert_403(client.get("/t/analysis", headers={"X-API-Key": key}))
        # the key store is in memory: a valid key gets as far as the database
        r = client.get("/t/mine", headers={"X-API-Key": key})
        assert_problem(r, 503, "DATABASE_CONNECTION_ERROR")
    r = client.wait_for("GET", "/t/mine", 200, timeout_s=10, headers=valid)
    assert [row["id"] for row in r.json()] == [1, 3]


# ---------------------------------------------------------------------------
# why a credential was refused: in the logs, never in the answer
# ---------------------------------------------------------------------------


def test_the_reason_for_a_refusal_is_logged_but_never_the_credential(
    make_client: Maker, db_url: str, db: DB, caplog: pytest.LogCaptureFixture
) -> None:
    now = dt.datetime.now(dt.UTC)
    real = create_key(db_url, "real", tenant_id=1)
    revoked = create_key(db_url, "gone", tenant_id=1)
    assert run_cli("keys", "revoke", "gone", url=db_url).returncode == 0
    expired = create_key(db_url, "old", tenant_id=1, expires_at=now - dt.timedelta(minutes=1))
    _, prefix, secret = real.split("_", 2)
    wrong_secret = f"ek_{prefix}_{secret[::-1]}"
    caplog.set_level(logging.INFO, logger="engine.auth")
    # 11 refusals with one code: all of them written one by one (the sample is 10 a minute)
    client = make_client(jwt_audience=AUDIENCE, jwt_issuer=ISSUER, error_log_sample=20)
    ok = {"aud": AUDIENCE, "iss": ISSUER}
    no_sub = claims(**ok)
    del no_sub["sub"]
    tokens = {
        "signature": (jwt.encode(claims(**ok), OTHER_SECRET), "signature"),
        "expired": (client.token(ttl_s=-300, **ok), "expired"),
        "audience": (client.token(aud="another-api", iss=ISSUER), "audience"),
        "issuer": (client.token(aud=AUDIENCE, iss="https://evil.example"), "issuer"),
        "no-sub": (jwt.encode(no_sub, JWT_SECRET), '"sub"'),
        "algorithm": (raw_token({"alg": "none"}, claims(**ok)), "alg"),
    }
    api_keys = {
        "unknown-key": ("ek_000000000000_" + "x" * 43, "unknown"),
        "malformed-key": ("not-a-key-at-all", "not an API key"),
        "wrong-secret": (wrong_secret, "does not match"),
        "revoked-key": (revoked, "revoked"),
        "expired-key": (expired, "expired"),
    }
    cases = {
        **{name: (bearer(t), t, reason) for name, (t, reason) in tokens.items()},
        **{name: ({"X-API-Key": k}, k, reason) for name, (k, reason) in api_keys.items()},
    }
    assert client.get(CAMERAS, headers={"X-API-Key": real}).status_code == 200
    plain = {}
    for name, (headers, _, _) in cases.items():
        r = client.get(CAMERAS, headers={**headers, "X-Request-ID": f"refused-{name}"})
        plain[name] = assert_401(r)
    client.engine.flush_errors()

    rows = {
        r["request_id"]: r
        for r in db.fetch("SELECT * FROM api_error_logs WHERE request_id LIKE 'refused-%'")
    }
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    for name, (_, credential, reason) in cases.items():
        row = rows[f"refused-{name}"]
        assert row["error_code"] == "INVALID_TOKEN" and row["response_status_code"] == 401
        stack = row["error_stack_trace"] or ""
        assert reason.lower() in stack.lower(), (name, stack)
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "engine.auth" and f"(request refused-{name})" in r.getMessage()
        ]
        assert len(lines) == 1 and reason.lower() in lines[0].lower(), (name, lines)
        # the client is told nothing more than before
        assert plain[name]["detail"] in PLAIN_DETAILS, plain[name]
        assert stack not in json.dumps(plain[name])
        # the credential, or any tell-tale piece of it, is in neither log
        logged = log_text + " ".join(str(v) for v in row.values())
        pieces = [credential, credential.rsplit(".", 1)[-1], credential.rsplit("_", 1)[-1]]
        for piece in pieces:
            if len(piece) >= 8:
                assert piece not in logged, (name, piece)
    # which key was refused is named, so an admin can act on it
    assert "'gone'" in rows["refused-revoked-key"]["error_stack_trace"]
    assert "'old'" in rows["refused-expired-key"]["error_stack_trace"]


# -- the cache of verified tokens (pure: no server) --------------------------------------

SECRET32 = "a-test-secret-of-at-least-32-bytes!"


def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import auth

    authenticator = auth.Authenticator(SECRET32)
    now = time.time()
    token = jwt.encode({"sub": "ann", "exp": int(now) + 60}, SECRET32, algorithm="HS256")
    first = authenticator._from_jwt(token)
    assert authenticator._from_jwt(token) is first  # the same principal: not verified again
    # past exp and its leeway, the remembered token is verified again, and refused
    monkeypatch.setattr(auth.time, "time", lambda: now + 60 + auth.LEEWAY_S + 1)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _Later(now + 60 + auth.LEEWAY_S + 1))
    with pytest.raises(auth.ApiError) as refused:
        authenticator._from_jwt(token)
    assert refused.value.code == "INVALID_TOKEN"
    assert refused.value.detail == "The token has expired"


def test_the_verified_tokens_are_bounded_and_a_tampered_one_is_not_among_them() -> None:
    from engine import auth

    authenticator = auth.Authenticator(SECRET32)
    exp = int(time.time()) + 600
    for n in range(auth.VERIFIED_TOKENS + 5):
        token = jwt.encode({"sub": f"u{n}", "exp": exp}, SECRET32, algorithm="HS256")
        authenticator._from_jwt(token)
    assert len(authenticator._verified) == auth.VERIFIED_TOKENS
    good = jwt.encode({"sub": "bob", "exp": exp}, SECRET32, algorithm="HS256")
    authenticator._from_jwt(good)
    head, payload, signature = good.split(".")
    with pytest.raises(auth.ApiError):
        authenticator._from_jwt(f"{head}.{payload}.{signature[:-2]}AA")


def test_a_token_whose_exp_is_beyond_a_float_is_verified_not_remembered() -> None:
    from engine import auth

    authenticator = auth.Authenticator(SECRET32)
    token = jwt.encode({"sub": "far", "exp": 10**400}, SECRET32, algorithm="HS256")
    principal = authenticator._from_jwt(token)
    assert principal.subject == "far"
    assert authenticator._verified == {}


def test_an_api_key_principal_is_built_once_and_a_revocation_still_refuses_it() -> None:
    import datetime as dt_

    from engine import auth, keys

    key, prefix = keys.new_key()
    row = {
        "key_prefix": prefix,
        "name": "ops",
        "key_hash": keys.hash_key(key),
        "roles": ["reader"],
        "permissions": [],
        "tenant_id": 4,
        "expires_at": None,
        "revoked_at": None,
    }
    store = keys.KeyStore()
    store.replace([row])
    authenticator = auth.Authenticator(SECRET32, store)
    first = authenticator._from_key(key)
    assert first.claims == {
        "sub": "key:ops",
        "roles": ["reader"],
        "permissions": [],
        "tenant_id": 4,
    }
    assert authenticator._from_key(key) is first  # not rebuilt per request
    store.replace([{**row, "revoked_at": dt_.datetime.now(dt_.UTC)}])
    with pytest.raises(auth.ApiError) as refused:
        authenticator._from_key(key)
    assert refused.value.code == "INVALID_TOKEN"
    store.replace([{**row, "roles": ["writer"]}])  # edited: a new principal, new roles
    assert authenticator._from_key(key).roles == frozenset({"writer"})


class _Later:
    """``datetime`` as PyJWT reads it (``datetime.now(tz=...)``), at a fixed later instant."""

    def __init__(self, at: float) -> None:
        self._at = at

    def now(self, tz: dt.tzinfo | None = None) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._at, tz=tz)

    def __getattr__(self, name: str) -> Any:
        return getattr(dt.datetime, name)
