"""The admin's tools: the admin API under ``/admin/v1`` and the operations behind it.

- :mod:`engine.admin.operations`: what an admin can do to the catalogue (list,
  show, create and update with the checks of ``engine check``, activate,
  deactivate, delete, versions, diff, rollback), shared by the HTTP API and the
  ``engine endpoints`` CLI verbs.
- :mod:`engine.admin.change`: a change kept only if the catalogue still serves.
- :mod:`engine.admin.fields`: the columns a body may set and how each is checked
  (pure).
- :mod:`engine.admin.api`: the built-in routes (the ones where the engine must
  act); the reads a SQL template can do are mapping rows of ``sql/014``.
- :mod:`engine.admin.openapi`: how the built-in routes appear in ``/openapi.json``
  (pure).
- :mod:`engine.admin.cli`: the ``python -m engine endpoints ...`` verbs.

Every admin route needs the role ``engine_admin`` (:data:`ROLE`).
"""

from __future__ import annotations

from engine.spec import ADMIN_PREFIX, ADMIN_ROLE, ADMIN_SERVICE

ROLE = ADMIN_ROLE
PREFIX = ADMIN_PREFIX
SERVICE = ADMIN_SERVICE

__all__ = ["PREFIX", "ROLE", "SERVICE"]
