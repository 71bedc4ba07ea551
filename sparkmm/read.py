"""``sparkmm.read``: sources that produce DataFrames.

Example:
    >>> import sparkmm
    >>> sparkmm.read.files(spark, "photos/*.jpg").count()     # doctest: +SKIP
    12
"""

from sparkmm.io.files import files

__all__ = ["files"]
