"""``sealgate serve | admin | node | model | audit``: the service and its clients, one module
per command family (``sealgate.cli.serve``, ``.admin``, ``.node``, ``.model``, ``.audit``)
and their shared helpers in ``sealgate.cli.client``."""

from __future__ import annotations

from typing import Any

from sealgate.cli import admin, audit, model, node, serve


def register(sub: Any) -> None:
    serve.register(sub)
    admin.register(sub)
    node.register(sub)
    model.register(sub)
    audit.register(sub)
