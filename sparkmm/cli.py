"""The ``sparkmm`` command.

Example:
    >>> main(["ops"])                                       # doctest: +ELLIPSIS
    url.download(...
"""

from __future__ import annotations

import argparse
import json
import sys


def _ops(_: argparse.Namespace) -> int:
    from sparkmm.ops.registry import OPERATORS

    for op in OPERATORS.values():
        print(f"{op.signature():<70} {op.sql_name:<26} {op.doc}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import sparkmm
    from sparkmm.jobs.image_cleaning import format_summary, run
    from sparkmm.jobs.samples import sample_photos

    inputs = args.input or [str(p) for p in sample_photos()]
    spark = sparkmm.session()
    summary = run(spark, inputs, args.output)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def _load(args: argparse.Namespace):
    from sparkmm.pipeline import PipelineError, load

    try:
        return load(args.pipeline, args.sets)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    p = _load(args)
    if p is None:
        return 2
    print(f"{args.pipeline}: ok ({len(p.steps)} steps, source {next(iter(p.source))}, "
          f"sink {next(iter(p.sink)) if p.sink else 'none'})")
    return 0


def _run(args: argparse.Namespace) -> int:
    p = _load(args)
    if p is None:
        return 2
    import sparkmm
    from sparkmm.pipeline import PipelineError, format_summary, run

    spark = sparkmm.session(p.profile, **p.spark)
    sparkmm.register(spark)
    try:
        summary = run(spark, p, progress=not args.quiet)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def _submit(args: argparse.Namespace, rest: list[str]) -> int:
    p = _load(args)
    if p is None:
        return 2
    from sparkmm.pipeline.submit import submit

    spark_args = (["--master", args.master] if args.master else []) + rest
    return submit(args.pipeline, spark_args, args.sets, args.json, p.profile)


def split_sql(text: str) -> list[str]:
    r"""Statements of a SQL script: ``--`` comments dropped, split at ``;`` ending a line.

    Example:
        >>> split_sql("-- x\nSET a = 1;\nSELECT ';' AS s;\n")
        ['SET a = 1', "SELECT ';' AS s"]
    """
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
    statements, current = [], []
    for ln in lines:
        current.append(ln)
        if ln.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    tail = "\n".join(current).strip()
    return [s for s in statements + ([tail] if tail else []) if s]


def _sql(args: argparse.Namespace) -> int:
    from pathlib import Path

    import sparkmm

    spark = sparkmm.session()
    sparkmm.register(spark)
    statements = split_sql(Path(args.script).read_text())
    overrides = dict(s.split("=", 1) for s in args.sets)
    result = None
    for statement in statements:
        key = statement[4:].split("=", 1)[0].strip() if statement.upper().startswith("SET ") else None
        if key in overrides:  # --set wins over the script's defaults
            statement = f"SET {key} = {overrides[key]}"
        result = spark.sql(statement)
    if result is not None and result.columns:
        result.show(args.rows, truncate=80)
    return 0


def _samples(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparkmm.jobs.samples import make_aesthetic_model, make_webdataset

    out = Path(args.out)
    shards = make_webdataset(out / "shards")
    model = make_aesthetic_model(out / "aesthetic")
    print(f"{len(shards)} WebDataset shards in {out / 'shards'}; aesthetic model in {model}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparkmm", description="Multimodal data processing on Spark")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ops", help="list every operator with its signature, SQL name and doc")
    p.set_defaults(fn=_ops)
    p = sub.add_parser("demo", help="the main job: image properties, filter, resize/crop/convert on local Spark")
    p.add_argument("--input", action="append", help="file glob (repeatable); default: the bundled sample photos")
    p.add_argument("--output", default="out/images", help="output directory (default: out/images)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(fn=_demo)
    for name, fn, doc in (("run", _run, "run a pipeline file on the embedded local Spark (or its profile)"),
                          ("validate", _validate, "check a pipeline file without running it"),
                          ("submit", None, "run a pipeline file through spark-submit; unknown options go to "
                                           "spark-submit")):
        p = sub.add_parser(name, help=doc)
        p.add_argument("pipeline", help="pipeline YAML file")
        p.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                       help="override a value (dotted path, e.g. vars.input=photos/*.jpg); repeatable")
        if name != "validate":
            p.add_argument("--json", action="store_true", help="print the summary as JSON")
        if name == "run":
            p.add_argument("--quiet", action="store_true", help="no progress lines")
        if name == "submit":
            p.add_argument("--master", help="spark master URL (local[2], spark://host:7077, yarn, k8s://...)")
        p.set_defaults(fn=fn)
    p = sub.add_parser("sql", help="run a SQL script (mm_* functions registered), statement by statement")
    p.add_argument("script")
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="NAME=VALUE",
                   help="value of a variable the script SETs (e.g. photos_dir=/data)")
    p.add_argument("--rows", type=int, default=20, help="rows of the last result to show")
    p.set_defaults(fn=_sql)
    p = sub.add_parser("samples", help="write sample WebDataset shards and an aesthetic model directory")
    p.add_argument("--out", default="samples")
    p.set_defaults(fn=_samples)
    args, rest = parser.parse_known_args(argv)
    if args.command == "submit":
        return _submit(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
