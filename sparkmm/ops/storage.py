"""Storage options: credentials and endpoints for object stores, kept out of plans and logs.

``StorageOptions`` is an immutable, hashable mapping whose ``repr`` masks secrets, so it can
key per-worker client caches and travel inside a pickled UDF (never as a literal column,
which ``explain()`` would print).

Example:
    >>> StorageOptions.of({"endpoint_url": "http://127.0.0.1:9000", "aws_secret_access_key": "s3cr3t"})
    StorageOptions(aws_secret_access_key=***, endpoint_url='http://127.0.0.1:9000')
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

SECRET_KEYS = ("secret", "token", "password", "session")
# Accepted spellings, mapped to one name each (fsspec/deltalake/boto3 users all feel at home).
ALIASES = {
    "endpoint": "endpoint_url", "aws_endpoint_url": "endpoint_url", "aws_endpoint": "endpoint_url",
    "key": "aws_access_key_id", "access_key_id": "aws_access_key_id", "access_key": "aws_access_key_id",
    "secret": "aws_secret_access_key", "secret_access_key": "aws_secret_access_key",
    "token": "aws_session_token", "session_token": "aws_session_token",
    "region": "region_name", "aws_region": "region_name",
    "anon": "anonymous", "profile_name": "profile",
}
KNOWN = {"endpoint_url", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region_name",
         "anonymous", "profile", "role_arn", "role_session_name", "external_id", "role_duration_seconds",
         "sts_endpoint_url", "allow_link_local", "allow_local_files"}


class StorageOptions(Mapping[str, Any]):
    """Immutable storage options; secrets masked in ``repr``/``str``."""

    __slots__ = ("_items",)

    def __init__(self, items: tuple[tuple[str, Any], ...]) -> None:
        self._items = items

    @classmethod
    def of(cls, options: Mapping[str, Any] | None) -> "StorageOptions":
        if isinstance(options, StorageOptions):
            return options
        norm: dict[str, Any] = {}
        for k, v in (options or {}).items():
            name = ALIASES.get(k.lower(), k.lower())
            if name not in KNOWN:
                raise ValueError(f"unknown storage option {k!r}; known: {sorted(KNOWN)}")
            norm[name] = v
        return cls(tuple(sorted(norm.items())))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageOptions) and other._items == self._items

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={'***' if any(s in k for s in SECRET_KEYS) else repr(v)}" for k, v in self._items)
        return f"StorageOptions({shown})"

    __str__ = __repr__

    def with_defaults(self, **defaults: Any) -> "StorageOptions":
        """These options, plus ``defaults`` for the keys they do not set."""
        merged = {**defaults, **dict(self._items)}
        return StorageOptions(tuple(sorted(merged.items())))

    def flag(self, key: str) -> bool:
        return str(self.get(key, "")).lower() in ("1", "true", "yes")
