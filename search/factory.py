"""Choose the search backend from configuration."""

from __future__ import annotations

from pathlib import Path

from search.backends import SearchBackend
from search.embedded import EmbeddedBackend

INDEX_DIR_NAME = "search-index"
MEILI_INDEX_UID = "agora_posts"


def make_backend(meili_url: str | None, meili_key: str | None, data_dir: Path) -> SearchBackend:
    """Meilisearch when a URL is configured, else the embedded index under data_dir."""
    if meili_url:
        # Imported here: the Meilisearch client and its HTTP stack take a quarter of a second
        # to import, which every process of a site on the embedded engine would pay.
        from search.meili import MeiliBackend

        return MeiliBackend(meili_url, meili_key or None, index_uid=MEILI_INDEX_UID)
    return EmbeddedBackend(data_dir / INDEX_DIR_NAME)
