"""Writing one Delta commit by hand, for the changes deltalake's API cannot express in one.

A Delta commit is the JSON file ``_delta_log/<version>.json``; whoever creates it first
owns that version. Here the file is created with put-if-absent (a hard link, which fails
if the name exists), so two writers can never both win version N: the loser gets
:class:`ConcurrentModificationError` and nothing it wrote becomes visible.

Used where a single transaction must hold a schema change together with file actions
(an append that adds columns, ``add_columns``'s removes + adds). Local tables only.

Example:
    >>> import pyarrow as pa
    >>> metadata_action(table, pa.schema([("id", pa.int64())]))["metaData"]["format"]  # doctest: +SKIP
    {'provider': 'parquet', 'options': {}}
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa


class ConcurrentModificationError(RuntimeError):
    """Another commit landed after the version this change was computed from."""


def _ms() -> int:
    return int(time.time() * 1000)


def metadata_action(table, schema: pa.Schema) -> dict[str, Any]:
    """The table's metaData action with a new schema (id, partitioning and configuration kept)."""
    from deltalake import Schema

    m = table.metadata()
    return {"metaData": {
        "id": m.id, "name": m.name, "description": m.description,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": Schema.from_arrow(schema).to_json(),
        "partitionColumns": list(m.partition_columns),
        "configuration": dict(m.configuration or {}),
        "createdTime": m.created_time,
    }}


def add_action(path: str, size: int, partition_values: dict[str, str | None], num_records: int) -> dict[str, Any]:
    return {"add": {"path": path, "partitionValues": partition_values, "size": size,
                    "modificationTime": _ms(), "dataChange": True,
                    "stats": json.dumps({"numRecords": num_records})}}


def remove_action(path: str, size: int, partition_values: dict[str, str | None]) -> dict[str, Any]:
    return {"remove": {"path": path, "deletionTimestamp": _ms(), "dataChange": True,
                       "extendedFileMetadata": True, "partitionValues": partition_values, "size": size}}


def commit(table_path: str, read_version: int, actions: list[dict[str, Any]], operation: str,
           parameters: dict[str, Any], blind_append: bool = False) -> int:
    """Write ``actions`` as version ``read_version + 1``; raise if that version exists already."""
    log_dir = Path(table_path) / "_delta_log"
    version = read_version + 1
    info = {"commitInfo": {"timestamp": _ms(), "operation": operation,
                           "operationParameters": {k: json.dumps(v) if not isinstance(v, str) else v
                                                   for k, v in parameters.items()},
                           "readVersion": read_version, "isBlindAppend": blind_append,
                           "engineInfo": "sparkmm", "txnId": str(uuid.uuid4())}}
    body = "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in [info, *actions])
    tmp = log_dir / f".{version:020d}.json.{uuid.uuid4().hex}.tmp"
    tmp.write_text(body)
    try:
        os.link(tmp, log_dir / f"{version:020d}.json")  # atomic put-if-absent
    except FileExistsError:
        raise ConcurrentModificationError(
            f"{table_path} changed since version {read_version} (version {version} was committed by "
            f"another writer); nothing was committed, compute the change again") from None
    finally:
        tmp.unlink(missing_ok=True)
    return version
