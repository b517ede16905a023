"""Interning of example text: each distinct string is stored once and events refer to it by id."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any


def storable(text: str) -> str:
    """The text as SQLite can hold it: lone surrogates (invalid UTF-8) become visible escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class TextInterner:
    """Maps text to row ids for one writer, remembering recent ids so repeats cost no query."""

    def __init__(self, text_model: Any, cache_size: int = 20_000) -> None:
        self._model = text_model
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self._cache_size = cache_size

    def ids(self, texts: Iterable[str]) -> dict[str, int]:
        """Row ids for every text, inserting the new ones. Call inside the write transaction."""
        wanted = {text: digest(text) for text in texts}
        missing = {key: text for text, key in wanted.items() if key not in self._cache}
        if missing:
            rows = [{"digest": key, "body": text} for key, text in missing.items()]
            for start in range(0, len(rows), 200):
                self._model.insert_many(rows[start : start + 200]).on_conflict_ignore().execute()
            keys = list(missing)
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                query = self._model.select(self._model.id, self._model.digest).where(self._model.digest.in_(chunk))
                for row_id, key in query.tuples():
                    self._remember(bytes(key), row_id)
        return {text: self._cache[key] for text, key in wanted.items()}

    def forget(self) -> None:
        """Drop the cache, e.g. after a transaction that inserted rows was rolled back."""
        self._cache.clear()

    def _remember(self, key: bytes, row_id: int) -> None:
        self._cache[key] = row_id
        self._cache.move_to_end(key)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
