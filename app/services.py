"""What a request needs from the application: settings and the two backends.

Kept in ``app.extensions`` by ``create_app``; blueprints reach it through
:func:`services`. Nothing here is per-worker state that another worker must see:
the index is the shared truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.settings import Settings
from backends.base import Index, StorageArea

EXTENSION = "dicomweb"


@dataclass(frozen=True)
class Services:
    settings: Settings
    storage: StorageArea
    index: Index


def services() -> Services:
    found: Services = current_app.extensions[EXTENSION]
    return found
