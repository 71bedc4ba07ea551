"""Pipeline files (YAML): parsing, ``--set`` overrides, variables and validation with line numbers.

A pipeline has a ``source``, a list of ``steps`` and an optional ``sink``::

    name: image-cleaning
    profile: local                      # spark-conf/<profile>.conf
    vars: {input: "photos/*.jpg"}       # ${input} anywhere below; --set vars.input=...
                                        # built in: ${sample_photos}, ${sample_videos}, ${librivox}
    source: {files: "${input}"}         # or table: NAME | delta: PATH | webdataset: GLOB
                                        # (+ storage_options: {...} for object storage)
    steps:
      - {op: image.load, input: path, output: img}                 # a Column operator
      - {op: image.width, input: img, output: width}               # a property
      - {filter: "width >= 400"}                                    # a SQL condition
      - {columns: {id: "element_at(split(path, '/'), -1)"}}        # SQL expressions
      - {op: image.resize, input: img, output: small, args: {size: [224, 224]}}
      - {infer: image.embed, input: small, output: embedding, gpus: 0.5, args: {model: efficientnet-lite0}}
      - {operator: udfs/aesthetic_score, args: {model: models/aesthetic}}  # an operator package
      - {mm: extract_frames, args: {column: video, fps: 1}}        # a df.mm step
      - {select: [id, width, embedding]}                            # or drop: [...]
    sink: {delta: {path: out/images, mode: overwrite}}              # or table: {name: ..., mode: ...}

Example:
    >>> spec = parse("source: {files: 'a/*.jpg'}\\nsteps:\\n  - {filter: 'size > 0'}\\n", "p.yaml")
    >>> spec.source, spec.steps[0].kind
    ({'files': 'a/*.jpg'}, 'filter')
    >>> parse("source: {files: x}\\nsteps:\\n  - {op: image.resize, input: a, output: b, args: {sise: 1}}\\n", "p.yaml")
    Traceback (most recent call last):
    ...
    sparkmm.pipeline.spec.PipelineError: p.yaml:3: steps[0] (image.resize): got an unexpected argument 'sise'; accepted: size, method, keep_aspect
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STEP_KINDS = ("op", "infer", "operator", "mm", "filter", "columns", "select", "drop")
SOURCE_KINDS = ("files", "table", "delta", "webdataset")
SINK_KINDS = ("delta", "table")
TOP_KEYS = ("name", "description", "profile", "spark", "vars", "source", "steps", "sink")
_VAR = re.compile(r"\$\{([A-Za-z_][\w]*)\}")


class PipelineError(ValueError):
    """A pipeline file that cannot run; the message starts with ``file:line:``."""


@dataclass
class Step:
    kind: str
    value: Any
    spec: dict[str, Any]
    line: int
    index: int

    @property
    def label(self) -> str:
        return f"steps[{self.index}] ({self.value if isinstance(self.value, str) else self.kind})"


@dataclass
class Pipeline:
    path: str
    name: str
    profile: str
    spark: dict[str, str]
    source: dict[str, Any]
    steps: list[Step]
    sink: dict[str, Any] | None
    lines: dict[tuple, int] = field(default_factory=dict)


def _lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Line (1-based) of every mapping key / sequence item, by its path in the document."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[path + (k.value,)] = k.start_mark.line + 1
            _lines(v, path + (k.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[path + (i,)] = v.start_mark.line + 1
            _lines(v, path + (i,), out)
    return out


def apply_sets(doc: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``key.sub=value`` overrides (values parsed as YAML: numbers, lists, booleans).

    Example:
        >>> apply_sets({"sink": {"delta": {"path": "a"}}, "steps": [{"args": {}}]},
        ...            ["sink.delta.path=/tmp/b", "steps.0.args.size=[64, 64]"])
        {'sink': {'delta': {'path': '/tmp/b'}}, 'steps': [{'args': {'size': [64, 64]}}]}
    """
    for item in sets:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise PipelineError(f"--set {item!r}: expected key=value")
        target: Any = doc
        parts = key.split(".")
        for p in parts[:-1]:
            if isinstance(target, list):
                if not p.isdigit() or int(p) >= len(target):
                    raise PipelineError(f"--set {key}: no item {p} in a list of {len(target)}")
                target = target[int(p)]
            else:
                target = target.setdefault(p, {})
            if not isinstance(target, (dict, list)):
                raise PipelineError(f"--set {key}: {p} is not a mapping")
        value = yaml.safe_load(raw) if raw else ""
        last = parts[-1]
        if isinstance(target, list):
            if not last.isdigit() or int(last) >= len(target):
                raise PipelineError(f"--set {key}: no item {last} in a list of {len(target)}")
            target[int(last)] = value
        else:
            target[last] = value
    return doc


def _substitute(value: Any, variables: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        def one(m: re.Match) -> str:
            if m.group(1) not in variables:
                raise PipelineError(f"{where}: ${{{m.group(1)}}} is not defined in vars "
                                    f"(defined: {', '.join(sorted(variables)) or 'none'})")
            return str(variables[m.group(1)])

        whole = _VAR.fullmatch(value)
        if whole and whole.group(1) in variables:  # keep the variable's type ("${size}" -> [224, 224])
            return variables[whole.group(1)]
        return _VAR.sub(one, value)
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    return value


def load(path: str | Path, sets: list[str] | None = None) -> Pipeline:
    """Read and validate a pipeline file."""
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"{path}: no such pipeline file")
    return parse(p.read_text(), str(path), sets)


def parse(text: str, path: str = "<pipeline>", sets: list[str] | None = None) -> Pipeline:
    """Parse and validate pipeline text (see the module docstring for the format)."""
    try:
        node = yaml.compose(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise PipelineError(f"{path}:{line} not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise PipelineError(f"{path}:1: a pipeline is a mapping with source, steps and sink")
    lines = _lines(node) if node is not None else {}
    doc = apply_sets(doc, list(sets or []))

    def at(*key: Any) -> str:
        for n in range(len(key), -1, -1):
            if key[:n] in lines:
                return f"{path}:{lines[key[:n]]}"
        return f"{path}:1"

    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        raise PipelineError(f"{at(unknown[0])}: unknown key {unknown[0]!r}; a pipeline has {', '.join(TOP_KEYS)}")
    variables = doc.get("vars") or {}
    if not isinstance(variables, dict):
        raise PipelineError(f"{at('vars')}: vars must be a mapping")
    resolved: dict[str, Any] = {}
    if _VAR.search(text) or any(_VAR.search(s) for s in sets or []):
        from sparkmm.jobs.samples import builtin_vars

        resolved = builtin_vars()
    for name, value in variables.items():  # a variable may use the built-ins and the ones above it
        resolved[name] = _substitute(value, resolved, at("vars", name))
    variables = resolved
    body = {k: _substitute(v, variables, at(k)) for k, v in doc.items() if k != "vars"}

    source = body.get("source")
    if not isinstance(source, dict) or len([k for k in source if k in SOURCE_KINDS]) != 1:
        raise PipelineError(f"{at('source')}: source needs exactly one of {', '.join(SOURCE_KINDS)}")
    steps_doc = body.get("steps") or []
    if not isinstance(steps_doc, list):
        raise PipelineError(f"{at('steps')}: steps must be a list")
    steps = [_step(s, i, at("steps", i)) for i, s in enumerate(steps_doc)]
    sink = body.get("sink")
    if sink is not None:
        kinds = [k for k in sink if k in SINK_KINDS] if isinstance(sink, dict) else []
        if len(kinds) != 1:
            raise PipelineError(f"{at('sink')}: sink needs exactly one of {', '.join(SINK_KINDS)}")
        target = sink[kinds[0]]
        if kinds[0] == "delta" and not (isinstance(target, str) or (isinstance(target, dict) and "path" in target)):
            raise PipelineError(f"{at('sink', 'delta')}: sink.delta needs a path")
        if kinds[0] == "table" and not (isinstance(target, str) or (isinstance(target, dict) and "name" in target)):
            raise PipelineError(f"{at('sink', 'table')}: sink.table needs a name")
    spark_conf = {str(k): str(v) for k, v in (body.get("spark") or {}).items()}
    return Pipeline(path, str(body.get("name") or Path(path).stem), str(body.get("profile") or "local"),
                    spark_conf, source, steps, sink, lines)


def _step(spec: Any, index: int, where: str) -> Step:
    if not isinstance(spec, dict):
        raise PipelineError(f"{where}: steps[{index}] must be a mapping with one of {', '.join(STEP_KINDS)}")
    kinds = [k for k in spec if k in STEP_KINDS]
    if len(kinds) != 1:
        raise PipelineError(f"{where}: steps[{index}] needs exactly one of {', '.join(STEP_KINDS)}, "
                            f"got {', '.join(spec) or 'nothing'}")
    step = Step(kinds[0], spec[kinds[0]], spec, int(where.rsplit(":", 1)[1]), index)
    _validate(step, where)
    return step


_ALLOWED = {
    "op": {"op", "input", "output", "args"},
    "infer": {"infer", "input", "output", "args", "gpus"},
    "operator": {"operator", "args", "batch_rows"},
    "mm": {"mm", "args"},
    "filter": {"filter"}, "columns": {"columns"}, "select": {"select"}, "drop": {"drop"},
}


def _validate(step: Step, where: str) -> None:
    from sparkmm.ops.registry import OPERATORS

    extra = set(step.spec) - _ALLOWED[step.kind]
    if extra:
        raise PipelineError(f"{where}: {step.label}: unknown key(s) {sorted(extra)}; "
                            f"a {step.kind} step takes {', '.join(sorted(_ALLOWED[step.kind]))}")
    args = step.spec.get("args") or {}
    if not isinstance(args, dict):
        raise PipelineError(f"{where}: {step.label}: args must be a mapping")
    if step.kind in ("op", "infer"):
        op = OPERATORS.get(str(step.value))
        if op is None:
            raise PipelineError(f"{where}: {step.label}: unknown operator; see `sparkmm ops` "
                                f"(e.g. {', '.join(list(OPERATORS)[:6])}, ...)")
        for key in ("input", "output"):
            if not isinstance(step.spec.get(key), str):
                raise PipelineError(f"{where}: {step.label}: needs {key}: <column name>")
        if step.kind == "infer" and op.wiring != "udf":
            raise PipelineError(f"{where}: {step.label}: only model/UDF operators run as infer steps; use op:")
        if op.wiring == "field" and args:
            raise PipelineError(f"{where}: {step.label}: a property takes no args")
        try:
            op.bind(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()
                       if k != "storage_options"})
        except (TypeError, ValueError) as e:
            raise PipelineError(f"{where}: {step.label}: {e}".replace(f"{op.key}() ", "")) from None
    elif step.kind == "mm":
        from sparkmm.spark.mixin import MMAccessor

        method = getattr(MMAccessor, str(step.value), None)
        public = sorted(m for m in vars(MMAccessor) if not m.startswith("_") and callable(getattr(MMAccessor, m)))
        if method is None or str(step.value).startswith("_") or step.value in ("write_delta",):
            raise PipelineError(f"{where}: {step.label}: unknown df.mm step; known: {', '.join(public)}")
        target = method
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(method).parameters.values()):
            from sparkmm.spark import frames  # the step's implementation holds the real keywords

            target = getattr(frames, str(step.value), method)
        try:
            inspect.signature(target).bind(None, **args)
        except TypeError as e:
            raise PipelineError(f"{where}: {step.label}: {e}") from None
    elif step.kind == "operator":
        if not isinstance(step.value, str):
            raise PipelineError(f"{where}: {step.label}: operator: <package directory>")
    elif step.kind in ("filter",) and not isinstance(step.value, str):
        raise PipelineError(f"{where}: {step.label}: filter: <SQL condition>")
    elif step.kind == "columns" and not (isinstance(step.value, dict) and step.value):
        raise PipelineError(f"{where}: {step.label}: columns: {{name: <SQL expression>, ...}}")
    elif step.kind in ("select", "drop") and not (isinstance(step.value, list) and step.value):
        raise PipelineError(f"{where}: {step.label}: {step.kind}: [column, ...]")
