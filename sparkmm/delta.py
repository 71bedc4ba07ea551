"""``sparkmm.delta``: Delta Lake tables (see :mod:`sparkmm.io.delta`).

Example:
    >>> import sparkmm
    >>> sparkmm.delta.read(spark, "out/images").count()     # doctest: +SKIP
"""

from sparkmm.io.delta import SchemaMismatchError, WriteResult, engine, merge_columns, read, write
from sparkmm.io.delta_labels import add_columns
from sparkmm.io.delta_log import ConcurrentModificationError

__all__ = ["ConcurrentModificationError", "SchemaMismatchError", "WriteResult", "add_columns", "engine",
           "merge_columns", "read", "write"]
