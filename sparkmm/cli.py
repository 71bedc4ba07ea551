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
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
