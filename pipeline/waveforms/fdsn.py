"""fdsnws-dataselect requests through ObsPy's FDSN client, with retry and backoff.

Outcome of one request, as the downloader needs it:

- data: an ObsPy :class:`~obspy.Stream`;
- no data (HTTP 204 or 404, or HTTP 200 with an empty body, which some servers send when
  nothing is left after trimming): :class:`NoData`, final, never retried;
- transient failure (timeout, connection error, HTTP 429/500/502/503, a body that does not
  parse as miniSEED, or one that is not whole miniSEED records — a transfer cut at a record
  boundary's wrong side, which ObsPy reads with a warning, dropping the cut record): retried with
  exponential backoff (``backoff_s``, ``2 * backoff_s``, ...) up to ``retries`` times, then
  :class:`DownloadFailed`;
- any other error (HTTP 400/401/403/413, bad data): :class:`DownloadFailed` at once.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from obspy import Stream, UTCDateTime, read
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import (
    URL_MAPPINGS,
    FDSNBadGatewayException,
    FDSNException,
    FDSNForbiddenException,
    FDSNInternalServerException,
    FDSNNoDataException,
    FDSNNoServiceException,
    FDSNRequestTooLargeException,
    FDSNServiceUnavailableException,
    FDSNTimeoutException,
    FDSNTooManyRequestsException,
    FDSNUnauthorizedException,
)

from pipeline.waveforms.credentials import Credentials
from pipeline.waveforms.params import FDSNService, FDSNSource
from pipeline.waveforms.sds import MSEED_LOCK

log = logging.getLogger(__name__)

_TRANSIENT = (
    FDSNTimeoutException,
    FDSNInternalServerException,
    FDSNBadGatewayException,
    FDSNServiceUnavailableException,
    FDSNTooManyRequestsException,
)


class NoData(Exception):
    """The service has no data for the request (HTTP 204/404)."""


class DownloadFailed(Exception):
    """A request failed for good (after retries, or a non-transient error).

    ``transient``: the cause may pass by itself (the service stayed unavailable or answered
    broken data through the retries), so a later build asks again; False for an answer
    that only a change of the request or the account heals (HTTP 4xx).
    """

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


#: What to do about an HTTP 4xx answer, by ObsPy's exception for it.
_REFUSAL_HINTS = (
    (
        FDSNUnauthorizedException,
        "HTTP 401: restricted data; set restricted: true and FDSN_USER/FDSN_PASSWORD, or "
        "check the account",
    ),
    (FDSNForbiddenException, "HTTP 403: restricted data this account may not read"),
    (FDSNRequestTooLargeException, "HTTP 413: lower waveforms.source.chunk_hours"),
)


def _refusal(exc: FDSNException) -> str:
    """The first line of a 4xx answer's message, with what to do about it when known."""
    message = str(exc).splitlines()[0]
    hint = next((h for kind, h in _REFUSAL_HINTS if isinstance(exc, kind)), None)
    return f"{message} ({hint})" if hint else message


@dataclass
class Fetched:
    """A request's data and the number of HTTP attempts it took."""

    stream: Stream
    attempts: int


class CutBody(Exception):
    """A dataselect answer whose bytes are not whole miniSEED records (a cut transfer)."""


def parse_body(body: bytes) -> Stream:
    """The miniSEED records of a dataselect answer ``body``.

    Raises:
        NoData: the body is empty (HTTP 200 without data, which some servers send when
            nothing is left after trimming).
        CutBody: ObsPy read fewer bytes than the body holds (it skips a cut last record with
            only a warning): the sum of record length x records over the traces is checked.
        Exception: whatever ObsPy raises on bytes that are not miniSEED.
    """
    if not body:
        raise NoData("HTTP 200 with an empty body")
    with MSEED_LOCK:
        stream = read(io.BytesIO(body), format="MSEED")
    used = sum(tr.stats.mseed.record_length * tr.stats.mseed.number_of_records for tr in stream)
    if used != len(body):
        raise CutBody(
            f"the answer's {len(body)} bytes hold {used} bytes of whole miniSEED records "
            "(a cut transfer?)"
        )
    return stream


def _is_transient(exc: FDSNException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    # ObsPy reports connection errors (refused, reset) as "Unknown Error (URLError): ..."
    return str(exc).startswith("Unknown Error")


def _is_no_data(exc: FDSNException) -> bool:
    return isinstance(exc, FDSNNoDataException) or "HTTP code: 404" in str(exc)


class ServiceUnreachable(ConnectionError):
    """The data centre did not answer at all (no route, name not resolved, connection
    refused, time-out): it may answer later, so callers retry it."""


def unreachable_reason(url: str, timeout_s: float) -> str | None:
    """Why ``url`` cannot be reached, or None when its server answers (any HTTP status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 - http(s) only
            return None
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return " ".join(str(reason).split()) or type(exc).__name__


def fdsn_client(cfg: FDSNService, credentials: Credentials | None = None) -> Client:
    """An ObsPy FDSN client of ``cfg``'s service: an http(s) base URL without service
    discovery (a bare dataselect server has no station service), a short name resolved by
    ObsPy; with ``credentials``, HTTP Digest authentication (dataselect asks ``queryauth``).

    Raises:
        ServiceUnreachable: service discovery of a short name found nothing because the
            server did not answer (ObsPy reports that as "No FDSN services could be
            discovered", the same as for a server that answers without FDSN services).
    """
    is_url = cfg.base_url.startswith(("http://", "https://"))
    try:
        return Client(
            cfg.base_url,
            timeout=cfg.timeout_s,
            _discover_services=not is_url,
            user=None if credentials is None else credentials.user,
            password=None if credentials is None else credentials.password,
        )
    except FDSNNoServiceException:
        url = URL_MAPPINGS.get(cfg.base_url.upper(), cfg.base_url)
        reason = unreachable_reason(url, cfg.timeout_s)
        if reason is None:
            raise
        raise ServiceUnreachable(f"{cfg.base_url} ({url}) did not answer: {reason}") from None


class DataselectClient:
    """One fdsnws-dataselect service; safe to share between threads (one Client per thread,
    :func:`fdsn_client`)."""

    def __init__(self, cfg: FDSNSource, credentials: Credentials | None = None):
        self.cfg = cfg
        self.credentials = credentials
        self._local = threading.local()

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = fdsn_client(self.cfg, self.credentials)
            self._local.client = client
        return client

    def get(
        self,
        network: str,
        station: str,
        location: str,
        channel: str,
        start: UTCDateTime,
        end: UTCDateTime,
    ) -> Fetched:
        """Waveforms for one request; raises :class:`NoData` or :class:`DownloadFailed`."""
        label = f"{network}.{station}.{location}.{channel} {start} - {end}"
        attempts = 0
        while True:
            attempts += 1
            try:
                body = io.BytesIO()
                self._client().get_waveforms(
                    network, station, location or "--", channel, start, end, filename=body
                )
                stream = parse_body(body.getvalue())
                stream.trim(start, end)
                return Fetched(stream, attempts)
            except NoData:
                log.warning("%s: HTTP 200 without miniSEED data, taken as no data", label)
                raise NoData(label) from None
            except (CutBody, ServiceUnreachable) as exc:
                retry = str(exc)
            except FDSNException as exc:
                if _is_no_data(exc):
                    raise NoData(label) from None
                if not _is_transient(exc):
                    raise DownloadFailed(f"{label}: {_refusal(exc)}", transient=False) from None
                retry = str(exc).splitlines()[0]
            except Exception as exc:  # the body did not parse: treat as a broken transfer
                retry = f"unreadable response ({type(exc).__name__}: {exc})"
            if attempts > self.cfg.retries:
                raise DownloadFailed(
                    f"{label}: gave up after {attempts} attempts: {retry}", transient=True
                )
            delay = self.cfg.backoff_s * 2 ** (attempts - 1)
            log.warning("%s: %s; retry in %.1f s", label, retry, delay)
            time.sleep(delay)
