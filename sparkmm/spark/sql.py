"""SQL functions: every scalar operator as ``mm_<accessor>_<op>``.

Each becomes a temporary SQL function with named, defaulted arguments that wraps the
operator's Arrow UDF, so SQL and accessors build the same plan.

Example:
    >>> import sparkmm
    >>> sparkmm.register(spark)                                     # doctest: +SKIP
    >>> spark.sql("SELECT mm_image_width(mm_image_load(path)) FROM files")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from sparkmm.ops.registry import OPERATORS, REQUIRED, Operator
from sparkmm.spark.udfs import udf_for


def _sql_literal(value: Any, typ: str) -> str:
    if value is None:
        return f"CAST(NULL AS {typ})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def function_ddl(op: Operator) -> str:
    """The CREATE TEMPORARY FUNCTION statement for one operator."""
    # "meta" kernels read only the descriptor, but the SQL function takes the whole media value.
    value_type = op.output_type if op.wiring == "meta" else op.input_type
    arg = "value"
    params = [f"{arg} {value_type}"]
    names = []
    for name, typ, default in op.sql_args():
        names.append(name)
        params.append(f"{name} {typ}" + ("" if default is REQUIRED else f" DEFAULT {_sql_literal(default, typ)}"))
    call_args = ", ".join([arg] + names)
    if op.wiring == "field":
        body = f"{arg}." + ".".join(op.field_path)
    elif op.wiring == "udf":
        body = f"_{op.sql_name}({call_args})"
    elif op.wiring == "decode":
        body = (f"CASE WHEN {arg} IS NULL THEN NULL ELSE named_struct('data', {arg}, "
                f"'meta', _{op.sql_name}({call_args})) END")
    else:
        inner = ", ".join([f"{arg}.meta"] + names)
        body = (f"CASE WHEN {arg} IS NULL THEN NULL ELSE named_struct('data', {arg}.data, "
                f"'meta', _{op.sql_name}({inner})) END")
    return (f"CREATE OR REPLACE TEMPORARY FUNCTION {op.sql_name}({', '.join(params)}) "
            f"RETURNS {op.output_type} RETURN {body}")


def register(spark: SparkSession) -> list[str]:
    """Register every scalar operator as a SQL function (and the ``webdataset`` source); returns their names."""
    from sparkmm.io.webdataset import register as register_webdataset
    from sparkmm.ops.storage import StorageOptions
    from sparkmm.spark.accessors import session_defaults

    names = []
    for op in OPERATORS.values():
        if op.wiring != "field":
            options = session_defaults(StorageOptions.of(None)) if op.storage_options else None
            spark.udf.register(f"_{op.sql_name}", udf_for(op, options))
        spark.sql(function_ddl(op))
        names.append(op.sql_name)
    register_webdataset(spark)
    return names
