"""The errors eqcat reports to its user, and which failures are worth retrying.

Two kinds of failure reach the command line:

- :class:`EqcatInputError` (and its subclasses): the input cannot be used — a file that is
  missing or unreadable, a field with a bad value, a station without data, a data centre that
  refuses the request. The message is one line naming the file, field or station and what was
  expected. It cannot heal by itself, so it is never retried; ``eqcat`` exits with status 2.
- anything else: a defect or an environment failure; ``eqcat`` prints one line and exits 1
  (``eqcat -v`` shows the traceback).

:func:`input_error` also recognises the standard library's own "cannot heal" errors (a missing
or unreadable file, an HTTP 4xx answer) so that code which raises them directly gets the same
treatment, and :func:`is_retryable` is the retry rule of the orchestration layer.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

#: ``OSError`` numbers of a file system problem the user must fix (retrying cannot help).
PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EROFS,
        errno.ENOSPC,
        errno.EEXIST,
    }
)

#: ObsPy's FDSN client errors that mean "the request itself is wrong" (HTTP 400/401/403/413,
#: a service the data centre does not run): asking again gives the same answer.
_FDSN_CLIENT_ERRORS = (
    "FDSNBadRequestException",
    "FDSNUnauthorizedException",
    "FDSNForbiddenException",
    "FDSNRequestTooLargeException",
    "FDSNNoServiceException",
    "FDSNInvalidRequestException",
    "FDSNDoubleAuthenticationException",
    "FDSNNoAuthenticationServiceException",
)


#: File system errors that are input problems whatever their ``errno``.
_FILE_ERRORS = (
    FileNotFoundError,
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
)


#: Appended to "a run table lacks columns": the run directory is from another eqcat version.
OLD_RUN_HINT = (
    " (a run directory written by another eqcat version? rebuild it from the stage that "
    "writes this table: eqcat build CONFIG --from STAGE)"
)


class EqcatInputError(ValueError):
    """Input that cannot be used: ``str()`` is one line naming the file/field/station.

    Args:
        message: what is wrong and what was expected.
        path: the file or folder concerned, if any (prefixed to the message).
        field: the config field or table column concerned, if any.
    """

    def __init__(
        self, message: str, *, path: str | Path | None = None, field: str | None = None
    ) -> None:
        self.message = " ".join(str(message).split())  # one line, whatever the caller passed
        self.path = None if path is None else Path(path)
        self.field = field
        super().__init__(self.message)

    def __str__(self) -> str:
        path = getattr(self, "path", None)
        parts = [str(path)] if path is not None else []
        if getattr(self, "field", None):
            parts.append(self.field)
        return ": ".join([*parts, self.message])

    def __reduce__(self):  # keeps path/field through pickling (Prefect results, Dask workers)
        return (_rebuild, (type(self), self.message, self.path, self.field))


def _rebuild(cls, message, path, field):
    return cls(message, path=path, field=field)


class MultiLineInputError(EqcatInputError):
    """Several input problems at once (a config): ``str()`` has one line per problem."""

    def __init__(self, message: str, *, path=None, field=None) -> None:
        super().__init__(message, path=path, field=field)
        self.message = str(message)

    def __str__(self) -> str:
        return self.message


class DataSourceError(EqcatInputError):
    """A data centre or archive that cannot serve the build (refused, unreachable after retries)."""


class RunDirBusyError(EqcatInputError):
    """Another build holds the run directory (it cannot heal by retrying at once)."""


class InterruptedBuild(Exception):  # noqa: N818 (not an error: the user asked for it)
    """The build was stopped by SIGINT/SIGTERM; ``str()`` says how to resume."""


def _http_status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    if isinstance(code, int) and 100 <= code < 600:
        return code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def input_error(exc: BaseException) -> EqcatInputError | None:
    """``exc`` as an :class:`EqcatInputError` when it is a "cannot heal" input problem, else None.

    Recognised: :class:`EqcatInputError` itself, an ``OSError`` about a file (missing,
    permission, not a directory, read-only or full file system) and an HTTP 4xx answer
    (except 408, a time-out).
    """
    if isinstance(exc, EqcatInputError):
        return exc
    if isinstance(exc, _FILE_ERRORS) or (
        isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS
    ):
        if exc.strerror and exc.filename is not None:
            return EqcatInputError(exc.strerror, path=exc.filename)
        return EqcatInputError(str(exc))  # raised with a message only: it names the file
    status = _http_status(exc)
    refused = status is not None and 400 <= status < 500 and status != 408
    if refused or type(exc).__name__ in _FDSN_CLIENT_ERRORS:
        return DataSourceError(f"request refused: {str(exc).splitlines()[0]}")
    return None


class ProgramError(RuntimeError):
    """An external program (HypoInverse, HypoDD) failed or ran past its time limit on these
    inputs: running it again on the same inputs gives the same end, so it is not retried."""


#: Errors that a second try on the same inputs raises again: a bad value, a wrong type, a
#: missing key or column (``UnicodeDecodeError`` and ``json.JSONDecodeError`` are
#: ``ValueError``\ s), a failed external program. A time-out of a connection, a refused
#: connection or an HTTP 5xx answer is none of them.
DETERMINISTIC_ERRORS = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    NotImplementedError,
    ProgramError,
)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its explicit causes (``raise ... from``), innermost last."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed task should be tried again: not for what cannot heal.

    Not retried: input that cannot be used (:func:`input_error`), an interrupted build, and
    :data:`DETERMINISTIC_ERRORS`, also when they are the cause of a wrapping error (a
    station-day's ``PickingError`` names the corrupt file that caused it).
    """
    if isinstance(exc, InterruptedBuild):
        return False
    return not any(
        input_error(e) is not None or isinstance(e, DETERMINISTIC_ERRORS) for e in causes(exc)
    )


def input_problem(
    exc: BaseException,
    classify: Callable[[BaseException], EqcatInputError | None] = input_error,
) -> EqcatInputError | None:
    """The input problem behind ``exc``: ``classify`` (default :func:`input_error`) of itself
    or, failing that, of its explicit ``raise ... from`` causes in turn; None when none is."""
    return next((found for e in causes(exc) if (found := classify(e)) is not None), None)


def flow_failed_on_input(
    record: logging.LogRecord,
    problem_of: Callable[[BaseException], EqcatInputError | None] = input_problem,
) -> bool:
    """Whether ``record`` is Prefect's "Encountered exception during execution" log of a flow
    run that raised an input problem (``problem_of``): its traceback says nothing the
    problem's one line does not, and nested flows (a stage in a build) log it once each."""
    exc = record.exc_info[1] if record.exc_info else None
    return (
        record.name.startswith("prefect")
        and exc is not None
        and record.getMessage().startswith("Encountered exception during execution")
        and problem_of(exc) is not None
    )
