"""sparkmm: multimodal (image, audio, video) data processing on Apache Spark.

Importing sparkmm installs the Column accessors (``.url``, ``.image``) and the
DataFrame mixin (``df.mm``).

Example:
    >>> import sparkmm
    >>> from pyspark.sql import functions as F
    >>> spark = sparkmm.session()                                        # doctest: +SKIP
    >>> df = sparkmm.read.files(spark, "photos/*.jpg")                   # doctest: +SKIP
    >>> df = df.withColumn("img", F.col("path").url.download().image.decode())  # doctest: +SKIP
    >>> df.select(F.col("img").image.width).show()                      # doctest: +SKIP
"""

from sparkmm import delta, ops, read
from sparkmm.errors import SparkmmError
from sparkmm.spark import accessors as _accessors
from sparkmm.spark import mixin as _mixin
from sparkmm.spark.session import session
from sparkmm.spark.sql import register

__version__ = "0.1.0"
__all__ = ["SparkmmError", "delta", "ops", "read", "register", "session"]

_accessors.install()
_mixin.install()
