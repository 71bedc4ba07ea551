"""``sparkmm.delta``: Delta Lake tables (see :mod:`sparkmm.io.delta`).

Example:
    >>> import sparkmm
    >>> sparkmm.delta.read(spark, "out/images").count()     # doctest: +SKIP
"""

from sparkmm.io.delta import SchemaMismatchError, WriteResult, engine, merge_columns, read, write

__all__ = ["SchemaMismatchError", "WriteResult", "engine", "merge_columns", "read", "write"]
