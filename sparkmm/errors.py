"""Error vocabulary shared by every operator.

A failed row carries a reason string ``"<category>: <detail>"``; the category is a
short stable word users can group and count (see ``df.mm.error_summary``).

Example:
    >>> reason("not_found", "/data/a.jpg")
    'not_found: /data/a.jpg'
    >>> category_of("not_found: /data/a.jpg")
    'not_found'
"""

from __future__ import annotations


class SparkmmError(Exception):
    """Raised by operators called with ``errors="raise"``; the message names the row."""


def reason(category: str, detail: str) -> str:
    detail = " ".join(str(detail).split())
    return f"{category}: {detail[:400]}"


def category_of(message: str | None) -> str | None:
    if message is None:
        return None
    return message.split(":", 1)[0]


def check_errors_mode(errors: str) -> str:
    if errors not in ("ignore", "raise"):
        raise ValueError(f"errors must be 'ignore' or 'raise', got {errors!r}")
    return errors
