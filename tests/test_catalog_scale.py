"""A catalogue of hundreds of rows: shared prepares, one-row reloads, serving throughout.

No timings here (bench/catalog_scale.py measures them): what a large catalogue must
do is compile each distinct template once, recompile on a reload only the row that
changed (every other row keeps its compiled object), and keep answering meanwhile.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from engine import catalog as catalog_module
from tests.helpers import compile_catalog, poll

ROWS = 100  # resources: three rows each (list, one by id, create)

SETUP = """
CREATE TABLE scale_items (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO scale_items (name) SELECT 'item ' || g FROM generate_series(1, 20) g;
INSERT INTO api_endpoint_mappings (endpoint_path, http_method, service_name,
    database_operation, target_table, query_template, query_parameters, result_mapping,
    requires_auth, cache_enabled, rate_limit_per_minute)
SELECT path, method, 'scale', op, 'scale_items', sql, params::jsonb, result::jsonb, false,
       false, NULL
FROM generate_series(0, {rows} - 1) r,
LATERAL (VALUES
  (format('/scale/r%s', r), 'GET', 'SELECT',
   'SELECT id, name FROM scale_items ORDER BY id', '[]', '{"shape": "list"}'),
  (format('/scale/r%s/{id}', r), 'GET', 'SELECT',
   'SELECT id, name FROM scale_items WHERE id = $1',
   '[{"name": "id", "in": "path", "type": "integer"}]', '{"shape": "object"}'),
  (format('/scale/r%s', r), 'POST', 'INSERT',
   'INSERT INTO scale_items (name) VALUES ($1) RETURNING id',
   '[{"name": "name", "in": "body", "type": "string", "required": true}]',
   '{"shape": "object", "status": 201}')
) AS v(path, method, op, sql, params, result);
INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, validation_schema)
SELECT id, 'scale ' || id, '{"type": "object", "required": ["name"],
  "properties": {"name": {"type": "string", "minLength": 1}}}'
FROM api_endpoint_mappings WHERE endpoint_path LIKE '/scale/%' AND http_method = 'POST';
INSERT INTO api_cache_config (endpoint_mapping_id, cache_enabled, cache_ttl_seconds)
SELECT id, true, 30 FROM api_endpoint_mappings
WHERE endpoint_path LIKE '/scale/r_' AND http_method = 'GET';
""".replace("{rows}", str(ROWS))


def _ids(db: Any) -> dict[str, int]:
    rows = db.fetch(
        "SELECT id, http_method, endpoint_path FROM api_endpoint_mappings "
        "WHERE endpoint_path LIKE '/scale/%'"
    )
    return {f"{r['http_method']} {r['endpoint_path']}": r["id"] for r in rows}


def _next_generation(client: Any, after: int) -> catalog_module.Catalog:
    return poll(
        lambda: client.engine.services.catalogs.current,
        lambda c: c.generation > after,
        f"a catalogue after generation {after}",
    )


def test_rows_sharing_a_template_share_one_prepare(db: Any) -> None:
    before = compile_catalog(db)
    db.execute(SETUP)
    after = compile_catalog(db)
    assert after.compiled_rows == before.compiled_rows + 3 * ROWS
    assert not [p for p in after.problems if "/scale/" in (p.path or "")]
    # three templates: each prepared once, not once per row (the list and the one by id
    # are planned once each too)
    assert after.prepares - before.prepares == 3
    # one JSON Schema text, compiled once and shared (each keeps its own name)
    posts = [ep for ep in after.endpoints if ep.spec.path.startswith("/scale/")]
    schemas = {ep.body_schema.name: ep.body_schema for ep in posts if ep.body_schema}
    assert len(schemas) == ROWS
    assert len({id(s.validator) for s in schemas.values()}) == 1


def test_a_one_row_reload_recompiles_that_row_and_keeps_every_other(
    db: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "FREEZE_ROWS", 100)  # the large-catalogue path
    db.execute(SETUP)
    client = make_client()
    ids = _ids(db)
    for r in range(ROWS):
        assert client.get(f"/scale/r{r}/3").json() == {"id": 3, "name": "item 3"}
        assert len(client.get(f"/scale/r{r}").json()) == 20
    created = client.post("/scale/r5", json={"name": "new"})
    assert created.status_code == 201
    assert client.post("/scale/r5", json={"name": ""}).status_code == 400  # its schema
    first = client.engine.services.catalogs.current
    assert gc.get_freeze_count() > 0  # the large catalogue is kept out of full collections

    changed = ids["GET /scale/r7/{id}"]
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = "
        "'SELECT id, upper(name) AS name FROM scale_items WHERE id = $1' WHERE id = $1",
        changed,
    )
    second = _next_generation(client, first.generation)
    assert client.get("/scale/r7/3").json() == {"id": 3, "name": "ITEM 3"}
    assert client.get("/scale/r8/3").json() == {"id": 3, "name": "item 3"}
    assert second.compiled_rows == 1 and second.prepares == 1
    assert second.compiled[changed] is not first.compiled[changed]
    kept = [mid for mid in first.compiled if mid != changed]
    assert all(second.compiled[mid] is first.compiled[mid] for mid in kept)
    match = second.match("/scale/r8/3", "GET")
    assert match is not None and match.endpoint is first.compiled[ids["GET /scale/r8/{id}"]]

    # writes that change nothing a row compiles from: a reload, and nothing recompiled
    db.execute("UPDATE api_endpoint_mappings SET description = description WHERE id = $1", changed)
    third = _next_generation(client, second.generation)
    db.execute("UPDATE api_cache_config SET cache_strategy = cache_strategy")
    fourth = _next_generation(client, third.generation)
    assert third.compiled_rows == 0 and fourth.compiled_rows == 0
    assert all(fourth.compiled[mid] is second.compiled[mid] for mid in second.compiled)

    # a side row of one endpoint changes: that endpoint alone is compiled again
    post = ids["POST /scale/r9"]
    db.execute(
        "UPDATE api_validation_schemas SET validation_schema = validation_schema || "
        """'{"properties": {"name": {"type": "string", "minLength": 3}}}' """
        "WHERE endpoint_mapping_id = $1",
        post,
    )
    fifth = _next_generation(client, fourth.generation)
    assert fifth.compiled_rows == 1
    assert client.post("/scale/r9", json={"name": "ab"}).status_code == 400
    assert client.post("/scale/r8", json={"name": "ab"}).status_code == 201


def test_requests_keep_being_answered_during_reloads(db: Any, make_client: Any) -> None:
    db.execute(SETUP)
    client = make_client()
    assert client.get("/scale/r1/2").status_code == 200
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(client.get("/scale/r1/2").status_code)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        catalogs = client.engine.services.catalogs
        for n in range(5):
            generation = catalogs.current.generation
            db.execute(
                "UPDATE api_endpoint_mappings SET query_template = $2 "
                "WHERE endpoint_path = $1 AND http_method = 'GET'",
                f"/scale/r{50 + n}/{{id}}",
                f"SELECT id, name, {n} AS rev FROM scale_items WHERE id = $1",
            )
            _next_generation(client, generation)
            assert client.get(f"/scale/r{50 + n}/2").json()["rev"] == n
    finally:
        stop.set()
        thread.join()
    assert statuses and set(statuses) == {200}
