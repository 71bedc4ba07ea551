"""The embedded default Spark session.

Example:
    >>> import sparkmm
    >>> spark = sparkmm.session()            # doctest: +SKIP
    >>> spark.conf.get("spark.sql.execution.arrow.pyspark.enabled")  # doctest: +SKIP
    'true'
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pyspark.sql import SparkSession

CONF_DIR = Path(os.environ.get("SPARKMM_CONF_DIR", Path(__file__).resolve().parents[2] / "spark-conf"))


def read_conf(path: str | os.PathLike) -> dict[str, str]:
    """Parse a spark-defaults file: ``key value`` lines, ``#`` comments; ``${SPARKMM_CONF_DIR}`` in a
    value is the file's directory.

    Example:
        >>> read_conf(CONF_DIR / "local.conf")["spark.sql.execution.arrow.pyspark.enabled"]
        'true'
    """
    conf: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if not value.strip():
            key, _, value = line.partition("\t")
        conf[key.strip()] = value.strip().replace("${SPARKMM_CONF_DIR}", str(Path(path).resolve().parent))
    return conf


def _ensure_java() -> None:
    """Spark needs a JVM (17 or 21): JAVA_HOME, java on PATH, or a Debian/Ubuntu JDK directory."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    for version in ("17", "21"):
        for home in sorted(Path("/usr/lib/jvm").glob(f"java-{version}-openjdk*")):
            if (home / "bin" / "java").exists():
                os.environ["JAVA_HOME"] = str(home)
                return
    raise RuntimeError("Spark needs Java 17 or 21: run scripts/install.sh (it installs Debian's "
                       "openjdk-17-jre-headless), or set JAVA_HOME")


def session(profile: str = "local", remote: str | None = None, **overrides: str) -> SparkSession:
    """The active SparkSession, else a new one from ``spark-conf/<profile>.conf``.

    ``overrides`` are more Spark settings, e.g. ``session(**{"spark.master": "local[2]"})``.
    ``remote`` (or the ``SPARK_REMOTE`` environment variable) connects to a Spark Connect
    server instead, e.g. ``"sc://host:15002"``; ``"local[2]"`` starts one on this machine.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    remote = remote or os.environ.get("SPARK_REMOTE")
    if remote:
        builder = SparkSession.builder.remote(remote)
        if remote.startswith("local"):  # a Connect server on this machine, for this user
            _ensure_java()
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            local = read_conf(CONF_DIR / f"{profile}.conf")
            for key in ("spark.sparkmm.allowLocalFiles",):
                if key in local:
                    builder = builder.config(key, local[key])
        return builder.getOrCreate()
    _ensure_java()
    conf = read_conf(CONF_DIR / f"{profile}.conf")
    conf.update(overrides)
    # Python workers must run the interpreter that has sparkmm and its dependencies.
    conf.setdefault("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable))
    conf.setdefault("spark.pyspark.driver.python", sys.executable)
    os.environ.setdefault("PYSPARK_PYTHON", conf["spark.pyspark.python"])
    if conf.get("spark.master", "").startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # stay on loopback
    log4j = CONF_DIR / "log4j2.properties"
    if log4j.exists():
        conf.setdefault("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile=file:{log4j}")
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(conf.get("spark.log.level", "WARN"))
    return spark
