"""Operators as Spark Arrow UDFs: one UDF per operator, shared by accessors and SQL.

Arguments travel as (literal) columns, so the same UDF serves
``F.col("img").image.resize((224, 224))`` and ``mm_image_resize(img, 224, 224)``.
Rows whose arguments differ are grouped and each group runs the kernel once.

Example:
    >>> from sparkmm.ops.registry import OPERATORS
    >>> udf_for(OPERATORS["image.encode"]).returnType.simpleString()  # doctest: +SKIP
    'binary'
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pyarrow as pa
from pyspark.sql.functions import arrow_udf

from sparkmm.ops.registry import Operator
from sparkmm.ops.storage import StorageOptions


def _per_row_positions(op: Operator) -> set[int]:
    out, i = set(), 0
    for p in op.params:
        if p.per_row:
            out.add(i)
        i += len(p.sql)
    return out


def _run(op: Operator, value: pa.Array, params: tuple[pa.Array, ...], extra: dict[str, Any]) -> pa.Array:
    n = len(value)
    if not params:
        return _shape(op, op.kernel(value, **extra))
    per_row = _per_row_positions(op)
    columns = [p.to_pylist() if i not in per_row else None for i, p in enumerate(params)]

    def call(idx: list[int] | None, scalars: tuple[Any, ...]) -> pa.Array:
        take = (lambda a: a) if idx is None else (lambda a: a.take(pa.array(idx, pa.int64())))
        flat = [take(params[i]) if i in per_row else scalars[i] for i in range(len(params))]
        return _shape(op, op.kernel(take(value), **op.unflatten(flat), **extra))

    rows = list(zip(*[c if c is not None else [None] * n for c in columns]))
    if n == 0 or all(r == rows[0] for r in rows):
        return call(None, rows[0] if n else (None,) * len(params))
    # Arguments that differ by row (SQL with column arguments): one kernel call per distinct tuple.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r, []).append(i)
    parts, order = [], []
    for args, idx in groups.items():
        parts.append(call(idx, args))
        order.extend(idx)
    merged = pa.concat_arrays(parts)
    inverse = [0] * n
    for pos, i in enumerate(order):
        inverse[i] = pos
    return merged.take(pa.array(inverse))


def _shape(op: Operator, out: pa.Array) -> pa.Array:
    # "decode" kernels return full image values; the engine keeps the bytes and takes the meta.
    if op.wiring == "decode":
        return out.field("meta")
    return out


def udf_return_type(op: Operator) -> str:
    return op.meta_type if op.wiring in ("meta", "decode") else op.output_type


@lru_cache(maxsize=256)
def udf_for(op: Operator, storage_options: StorageOptions | None = None):
    """The Arrow UDF running ``op``'s kernel: ``udf(value, *sql_args)``.

    Storage options ride in the function's closure (pickled with it), not in the plan.
    """
    extra = {"storage_options": storage_options} if op.storage_options else {}

    def run(value: pa.Array, *params: pa.Array) -> pa.Array:
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        return _run(op, value, params, extra)

    run.__name__ = f"mm_{op.accessor}_{op.name}"
    return arrow_udf(run, udf_return_type(op))
