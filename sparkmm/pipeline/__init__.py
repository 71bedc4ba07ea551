"""Declarative pipelines: YAML files run by ``sparkmm run``/``sparkmm submit`` or from Python.

Example:
    >>> from sparkmm.pipeline import load, run, format_summary
    >>> print(format_summary(run(spark, load("pipelines/image_cleaning.yaml"))))   # doctest: +SKIP
"""

from sparkmm.pipeline.run import build, format_summary, run
from sparkmm.pipeline.spec import Pipeline, PipelineError, load, parse

__all__ = ["Pipeline", "PipelineError", "build", "format_summary", "load", "parse", "run"]
