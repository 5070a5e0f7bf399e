"""fdsnws-dataselect requests through ObsPy's FDSN client, with retry and backoff.

Outcome of one request, as the downloader needs it:

- data: an ObsPy :class:`~obspy.Stream`;
- no data (HTTP 204 or 404, or HTTP 200 with an empty body, which some servers send when
  nothing is left after trimming): :class:`NoData`, final, never retried;
- transient failure (timeout, connection error, HTTP 429/500/502/503, a body that does not
  parse as miniSEED, e.g. a truncated transfer): retried with
  exponential backoff (``backoff_s``, ``2 * backoff_s``, ...) up to ``retries`` times, then
  :class:`DownloadFailed`;
- any other error (HTTP 400/401/403/413, bad data): :class:`DownloadFailed` at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from obspy import Stream, UTCDateTime
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import (
    FDSNBadGatewayException,
    FDSNException,
    FDSNInternalServerException,
    FDSNNoDataException,
    FDSNServiceUnavailableException,
    FDSNTimeoutException,
    FDSNTooManyRequestsException,
)
from obspy.io.mseed import ObsPyMSEEDFilesizeTooSmallError

from pipeline.waveforms.credentials import Credentials
from pipeline.waveforms.params import FDSNService, FDSNSource

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
    """A request failed for good (after retries, or a non-transient error)."""


@dataclass
class Fetched:
    """A request's data and the number of HTTP attempts it took."""

    stream: Stream
    attempts: int


def _is_transient(exc: FDSNException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    # ObsPy reports connection errors (refused, reset) as "Unknown Error (URLError): ..."
    return str(exc).startswith("Unknown Error")


def _is_no_data(exc: FDSNException) -> bool:
    return isinstance(exc, FDSNNoDataException) or "HTTP code: 404" in str(exc)


def fdsn_client(cfg: FDSNService, credentials: Credentials | None = None) -> Client:
    """An ObsPy FDSN client of ``cfg``'s service: an http(s) base URL without service
    discovery (a bare dataselect server has no station service), a short name resolved by
    ObsPy; with ``credentials``, HTTP Digest authentication (dataselect asks ``queryauth``)."""
    is_url = cfg.base_url.startswith(("http://", "https://"))
    return Client(
        cfg.base_url,
        timeout=cfg.timeout_s,
        _discover_services=not is_url,
        user=None if credentials is None else credentials.user,
        password=None if credentials is None else credentials.password,
    )


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
                stream = self._client().get_waveforms(
                    network, station, location or "--", channel, start, end
                )
                return Fetched(stream, attempts)
            except ObsPyMSEEDFilesizeTooSmallError:
                log.warning("%s: HTTP 200 without miniSEED data, taken as no data", label)
                raise NoData(label) from None
            except FDSNException as exc:
                message = str(exc).splitlines()[0]
                if _is_no_data(exc):
                    raise NoData(label) from None
                if not _is_transient(exc):
                    raise DownloadFailed(f"{label}: {message}") from None
                retry = message
            except Exception as exc:  # the body did not parse: treat as a broken transfer
                retry = f"unreadable response ({type(exc).__name__}: {exc})"
            if attempts > self.cfg.retries:
                raise DownloadFailed(f"{label}: gave up after {attempts} attempts: {retry}")
            delay = self.cfg.backoff_s * 2 ** (attempts - 1)
            log.warning("%s: %s; retry in %.1f s", label, retry, delay)
            time.sleep(delay)
