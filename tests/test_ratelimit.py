"""Rate limits from rate_limit_per_minute: per endpoint and caller, with the standard headers."""

from __future__ import annotations

from tests.helpers import add_endpoint, assert_problem


def _limited(db, path: str = "/limited", per_minute: int = 3, **columns) -> int:
    return add_endpoint(
        db,
        path,
        "GET",
        "SELECT 1 AS v",
        [],
        {"shape": "scalar"},
        rate_limit_per_minute=per_minute,
        **columns,
    )


def test_the_call_over_the_limit_is_429_with_headers_on_every_answer(db, make_client):
    _limited(db)
    client = make_client()
    remaining = []
    for _ in range(3):
        ok = client.get("/limited")
        assert ok.status_code == 200
        assert ok.headers["ratelimit-limit"] == "3"
        assert 0 < int(ok.headers["ratelimit-reset"]) <= 60
        remaining.append(int(ok.headers["ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    over = client.get("/limited")
    body = assert_problem(over, 429, "RATE_LIMIT_EXCEEDED")
    assert "3 calls a minute" in body["detail"]
    assert over.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["ratelimit-limit"] == "3"


def test_limits_are_per_caller_and_per_endpoint(db, make_client):
    _limited(db, requires_auth=True)
    _limited(db, "/other")
    client = make_client()
    alice, bob = client.auth(sub="alice"), client.auth(sub="bob")
    for _ in range(3):
        assert client.get("/limited", headers=alice).status_code == 200
    assert client.get("/limited", headers=alice).status_code == 429
    assert client.get("/limited", headers=client.auth(sub="alice", ttl_s=900)).status_code == 429
    assert client.get("/limited", headers=bob).status_code == 200  # another principal
    assert client.get("/other").status_code == 200  # another endpoint


def test_an_error_answer_also_counts_and_carries_the_headers(db, make_client):
    add_endpoint(
        db,
        "/limited/{id}",
        "GET",
        "SELECT $1::int AS v",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "scalar"},
        rate_limit_per_minute=2,
    )
    client = make_client()
    bad = client.get("/limited/x")
    assert_problem(bad, 400, "INVALID_PARAMETER")
    assert bad.headers["ratelimit-remaining"] == "1"
    assert client.get("/limited/1").status_code == 200
    assert client.get("/limited/1").status_code == 429


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(db, make_client):
    _limited(db, per_minute=2)
    untrusted = make_client()
    for n in range(2):
        assert (
            untrusted.get("/limited", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            == 200
        )
    # spoofing another address does not buy more calls
    assert untrusted.get("/limited", headers={"X-Forwarded-For": "203.0.113.99"}).status_code == 429


def test_a_trusted_proxy_passes_the_client_address(db, make_client):
    _limited(db, per_minute=2)
    behind_proxy = make_client(trusted_proxies="127.0.0.1")
    for _ in range(2):
        assert (
            behind_proxy.get("/limited", headers={"X-Forwarded-For": "198.51.100.7"}).status_code
            == 200
        )
    assert (
        behind_proxy.get("/limited", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 429
    )
    # another client behind the same proxy has its own budget; a forged left-most hop is skipped
    other = behind_proxy.get("/limited", headers={"X-Forwarded-For": "198.51.100.7, 198.51.100.8"})
    assert other.status_code == 200


def test_no_limit_when_the_row_sets_none(db, make_client):
    add_endpoint(
        db, "/free", "GET", "SELECT 1 AS v", [], {"shape": "scalar"}, rate_limit_per_minute=None
    )
    client = make_client()
    for _ in range(20):
        response = client.get("/free")
        assert response.status_code == 200 and "ratelimit-limit" not in response.headers


def test_a_redis_outage_lets_calls_through(db, make_client):
    _limited(db, per_minute=1)
    client = make_client(redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    for _ in range(3):
        assert client.get("/limited").status_code == 200
    assert client.engine.services.limiter.failures >= 3
