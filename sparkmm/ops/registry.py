"""One definition per operator.

Every operator is a plain kernel function in ``sparkmm.ops.<modality>`` (Arrow
arrays in, Arrow array out, no Spark), decorated with :func:`operator`. The
decorator records how the operator is exposed elsewhere — the Column accessor
method ``F.col(c).<accessor>.<name>(...)`` and the SQL function
``mm_<accessor>_<name>`` — so nothing is declared twice.

Example:
    >>> from sparkmm.ops.registry import OPERATORS
    >>> OPERATORS["image.width"].sql_name
    'mm_image_width'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

REQUIRED: Any = object()

# How the Spark layer wires a kernel into a plan:
#  - "udf":      the kernel runs in a Python worker on the whole input value.
#  - "meta":     lazy image step: the kernel only sees the small descriptor of an image
#                value (not its bytes); the engine re-attaches the untouched bytes.
#  - "decode":   bytes -> descriptor; the engine pairs the descriptor with the bytes.
#  - "field":    a property stored in the descriptor; the engine reads the field, no Python.
Wiring = Literal["udf", "meta", "decode", "field"]


@dataclass(frozen=True)
class Param:
    """One operator argument.

    ``sql`` lists the SQL/Spark-level scalar arguments the Python value expands to:
    ``size=(224, 224)`` becomes ``width INT, height INT``.
    """

    name: str
    sql: tuple[tuple[str, str], ...]
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    doc: str = ""
    # A per-row argument: a column (or a literal) whose values the kernel gets as an array.
    per_row: bool = False

    def flatten(self, value: Any) -> list[Any]:
        """The SQL-level scalars for a Python value, validated."""
        if value is REQUIRED:
            raise TypeError(f"missing required argument {self.name!r}")
        if self.per_row:
            return [value]
        if self.choices is not None and value is not None and value not in self.choices:
            raise ValueError(f"{self.name}={value!r} is not one of {list(self.choices)}")
        if len(self.sql) == 1:
            return [value]
        if value is None:
            return [None] * len(self.sql)
        if not isinstance(value, (tuple, list)) or len(value) != len(self.sql):
            names = ", ".join(n for n, _ in self.sql)
            raise ValueError(f"{self.name} must be a sequence of {len(self.sql)} values ({names}), got {value!r}")
        return list(value)


@dataclass(frozen=True)
class Operator:
    accessor: str
    name: str
    kernel: Callable[..., Any]
    wiring: Wiring
    input_type: str  # Spark DDL of the value the kernel reads
    output_type: str  # Spark DDL of what the operator returns
    params: tuple[Param, ...] = ()
    doc: str = ""
    field_path: tuple[str, ...] = field(default=())
    # Takes ``storage_options``: bound in the UDF's closure, never a SQL argument, so
    # credentials cannot show up in plans or explain() output.
    storage_options: bool = False

    @property
    def key(self) -> str:
        return f"{self.accessor}.{self.name}"

    @property
    def meta_type(self) -> str:
        """DDL of the descriptor of the value this operator returns (lazy image/audio values)."""
        prefix = "STRUCT<data: BINARY, meta: "
        if not self.output_type.startswith(prefix):
            raise TypeError(f"{self.key} does not return a media value")
        return self.output_type[len(prefix):-1]

    @property
    def sql_name(self) -> str:
        return f"mm_{self.accessor}_{self.name}"

    def sql_args(self) -> list[tuple[str, str, Any]]:
        """(name, type, default) of every SQL-level scalar argument, in order."""
        out: list[tuple[str, str, Any]] = []
        for p in self.params:
            defaults = p.flatten(p.default) if p.default is not REQUIRED else [REQUIRED] * len(p.sql)
            for (name, typ), d in zip(p.sql, defaults):
                out.append((name, typ, d))
        return out

    def bind(self, *args: Any, **kwargs: Any) -> list[Any]:
        """Python call arguments -> validated SQL-level scalars, in order."""
        if len(args) > len(self.params):
            raise TypeError(f"{self.key}() takes {len(self.params)} arguments, got {len(args)}")
        values: dict[str, Any] = {p.name: p.default for p in self.params}
        for p, a in zip(self.params, args):
            values[p.name] = a
        for k, v in kwargs.items():
            if k not in values:
                accepted = ", ".join(p.name for p in self.params) or "none"
                raise TypeError(f"{self.key}() got an unexpected argument {k!r}; accepted: {accepted}")
            values[k] = v
        flat: list[Any] = []
        for p in self.params:
            flat.extend(p.flatten(values[p.name]))
        return flat

    def unflatten(self, flat: Sequence[Any]) -> dict[str, Any]:
        """SQL-level scalars, in order -> keyword arguments of the kernel."""
        kwargs: dict[str, Any] = {}
        i = 0
        for p in self.params:
            n = len(p.sql)
            kwargs[p.name] = flat[i] if n == 1 else tuple(flat[i:i + n])
            if n > 1 and all(v is None for v in kwargs[p.name]):
                kwargs[p.name] = None
            i += n
        return kwargs

    def signature(self) -> str:
        if self.wiring == "field":
            return f"{self.key}  (property)"
        parts = []
        for p in self.params:
            parts.append(p.name if p.default is REQUIRED else f"{p.name}={p.default!r}")
        if self.storage_options:
            parts.append("storage_options=None")
        return f"{self.key}({', '.join(parts)})"


OPERATORS: dict[str, Operator] = {}


def operator(
    accessor: str,
    *,
    wiring: Wiring = "udf",
    input_type: str,
    output_type: str,
    params: Sequence[Param] = (),
    name: str | None = None,
    field_path: Sequence[str] = (),
    storage_options: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a kernel as an operator; returns the kernel unchanged."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        op = Operator(
            accessor=accessor,
            name=name or fn.__name__,
            kernel=fn,
            wiring=wiring,
            input_type=input_type,
            output_type=output_type,
            params=tuple(params),
            doc=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            field_path=tuple(field_path),
            storage_options=storage_options,
        )
        prior = OPERATORS.get(op.key)
        if prior is not None and prior.kernel.__module__ != fn.__module__:
            raise RuntimeError(f"operator {op.key} defined twice ({prior.kernel.__module__}, {fn.__module__})")
        OPERATORS[op.key] = op
        return fn

    return wrap


ERRORS = Param("errors", (("errors", "STRING"),), "ignore", ("ignore", "raise"),
               "'ignore': bad rows become null with a reason; 'raise': fail naming the row")
