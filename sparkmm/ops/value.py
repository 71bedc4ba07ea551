"""Lazy media values: ``struct<data: binary, meta: struct<...>>`` shared by every modality.

``data`` holds the encoded bytes (or null when the value refers to a local file, whose path
is ``meta.source``); ``meta`` describes the media *after* the pending steps in ``meta.ops``
(a JSON list). Kernels read and write these arrays through :class:`LazyValues`.

Example:
    >>> import pyarrow as pa
    >>> V = LazyValues(pa.struct([("size", pa.int64()), ("ops", pa.string()), ("error", pa.string()),
    ...                           ("source", pa.string())]))
    >>> V.metas(V.build(pa.array([b"x"]), [V.bad("empty: no bytes", 1)]))[0]["error"]
    'empty: no bytes'
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

import pyarrow as pa

from sparkmm.errors import SparkmmError
from sparkmm.ops.registry import operator

Meta = dict[str, Any]
Step = Callable[[Meta], tuple[list[Any], dict[str, Any]]]


class LazyValues:
    """Reading, building and extending value arrays of one descriptor type."""

    def __init__(self, meta_type: pa.StructType) -> None:
        self.meta_type = meta_type
        self.fields = [f.name for f in meta_type]
        self.value_type = pa.struct([("data", pa.binary()), ("meta", meta_type)])

    def bad(self, error: str, size: int | None = None) -> Meta:
        """The descriptor of a bad row: only the reason (and the size, when known)."""
        m = dict.fromkeys(self.fields)
        m["error"], m["size"] = error, size
        return m

    def metas(self, values: pa.Array) -> list[Meta | None]:
        """The descriptors of a value (or bare meta) array, without touching the bytes."""
        values = _combined(values)
        meta = values.field("meta") if values.type.get_field_index("data") >= 0 else values
        return [m if ok else None for m, ok in zip(meta.to_pylist(), values.is_valid().to_pylist())]

    def split(self, values: pa.Array) -> tuple[list[bytes | None] | None, list[Meta | None]]:
        """Python data (None for a bare meta array) and descriptors."""
        values = _combined(values)
        data = values.field("data").to_pylist() if values.type.get_field_index("data") >= 0 else None
        return data, self.metas(values)

    def meta_array(self, metas: list[Meta | None]) -> pa.Array:
        return pa.array(metas, self.meta_type)

    def build(self, data: pa.Array | list[bytes | None], metas: list[Meta | None]) -> pa.Array:
        """A value array; an Arrow ``data`` array is reused as the child without copying the bytes."""
        data = data.cast(pa.binary()) if isinstance(data, pa.Array) else pa.array(data, pa.binary())
        mask = pa.array([m is None for m in metas])
        return pa.StructArray.from_arrays(
            [data, self.meta_array([m or dict.fromkeys(self.fields) for m in metas])],
            fields=list(self.value_type), mask=mask)

    def like_input(self, values: pa.Array, metas: list[Meta | None]) -> pa.Array:
        """New descriptors in the shape of the input: a bare meta array or a full value."""
        values = _combined(values)
        if values.type.get_field_index("data") < 0:
            return self.meta_array(metas)
        return self.build(values.field("data"), metas)

    def append(self, metas: list[Meta | None], step: Step) -> list[Meta | None]:
        """Add a pending step to every good row: ``step(meta) -> (op, changed fields)``."""
        out: list[Meta | None] = []
        for m in metas:
            if m is None or m.get("error"):
                out.append(m)
                continue
            op, changes = step(m)
            out.append({**m, **changes, "ops": json.dumps(steps(m) + [op], separators=(",", ":"))})
        return out


def field(values: pa.Array, name: str) -> pa.Array:
    """One descriptor field of a value (or bare meta) array; null where the value is null."""
    values = _combined(values)
    meta = values.field("meta") if values.type.get_field_index("data") >= 0 else values
    out = meta.field(name)
    return pa.compute.if_else(values.is_valid(), out, pa.scalar(None, out.type))


def property_operator(accessor: str, value_ddl: str, name: str, ddl: str, doc: str) -> Callable[[pa.Array], pa.Array]:
    """Register ``<accessor>.<name>``: a descriptor field, read in the JVM by the Spark layer."""
    def prop(values: pa.Array) -> pa.Array:
        return field(values, name)

    prop.__name__, prop.__doc__ = name, doc
    return operator(accessor, wiring="field", input_type=value_ddl, output_type=ddl, field_path=("meta", name))(prop)


def raise_bad(metas: Iterable[Meta | None], sources: list[Any] | None, what: str) -> None:
    """With ``errors="raise"``: fail on the first bad row, naming its source (or its position)."""
    for i, m in enumerate(metas):
        if m is not None and m.get("error"):
            name = repr(sources[i]) if sources is not None else f"row {i} of the batch"
            raise SparkmmError(f"{what} failed for {name}: {m['error']}")


def load_values(V: LazyValues, urls: pa.Array, probe: Callable[[Any, int], Meta], what: str, errors: str,
                fetch: dict[str, Any], storage_options: dict | None) -> pa.Array:
    """Values for URLs and paths: remote bytes are downloaded and probed, local files are probed in
    place and kept by reference (``data`` null, ``meta.source`` the path); bad rows keep a reason.

    ``probe(file_object, size)`` reads a container header into a descriptor; ``fetch`` holds the
    download settings (max_connections, timeout, retries, max_bytes).
    """
    import io

    from sparkmm.ops import url as _url
    from sparkmm.ops.storage import StorageOptions

    urls = _combined(urls)
    values = urls.to_pylist()
    local = [u is not None and _url.is_local(u) for u in values]
    data, reasons = _url.fetch(pa.array([None if loc else u for u, loc in zip(values, local)], pa.string()),
                               storage_options=storage_options, **fetch)
    options = _url.FetchOptions(max_bytes=fetch.get("max_bytes"), storage_options=StorageOptions.of(storage_options))
    metas: list[Meta | None] = []
    for u, loc, b, r in zip(values, local, data.to_pylist(), reasons.to_pylist()):
        if u is None:
            metas.append(None)
        elif not loc:
            metas.append(V.bad(r) if r is not None else probe(io.BytesIO(b), len(b)))
        else:
            try:
                f, size = _url.open_local(u, options)
            except _url.FetchFailed as e:
                metas.append(V.bad(str(e)))
                continue
            with f:
                m = probe(f, size)
            m["source"] = u  # bad rows keep it too, so reasons name their file
            metas.append(m)
    if errors == "raise":
        raise_bad(metas, values, what)
    return V.build(data, metas)


def steps(m: Meta) -> list[list[Any]]:
    """The pending steps of a descriptor."""
    return json.loads(m["ops"] or "[]")


def _combined(values: pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
