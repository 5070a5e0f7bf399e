"""Wording of counts in messages and reports."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` in the number ``n`` asks for: ``1 event``, ``0 events``, ``2 events``.

    ``plural`` defaults to ``noun + "s"``.
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
