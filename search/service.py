"""The search backend this process uses, chosen once from the settings."""

from __future__ import annotations

from core.settings import Settings
from search.backends import SearchBackend
from search.factory import make_backend

_backend: SearchBackend | None = None


def configure(settings: Settings) -> SearchBackend:
    """Pick Meilisearch when AGORA_MEILI_URL is set, else the embedded engine."""
    global _backend
    _backend = make_backend(settings.meili_url, settings.meili_key, settings.data_dir)
    return _backend


def use(backend: SearchBackend) -> SearchBackend:
    """Use a given backend (tests hand in a fresh in-memory index)."""
    global _backend
    _backend = backend
    return backend


def backend() -> SearchBackend:
    if _backend is None:
        raise RuntimeError("search is not configured in this process")
    return _backend


async def close() -> None:
    global _backend
    if _backend is not None:
        await _backend.close()
        _backend = None
