"""Where a build's station inventory comes from: an inline station list, a StationXML file
or an fdsnws-station query (network access, with an account for restricted metadata).

Kept apart from :mod:`pipeline.waveforms.inventory` (channel choice, the stations table),
which the stages reading the archive import: the FDSN client code then stays out of their
cache keys (``flows/caching.py``, ``module_closure``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from obspy import Inventory, UTCDateTime, read_inventory

from pipeline.errors import DataSourceError, EqcatInputError, input_error
from pipeline.waveforms.credentials import Credentials, fdsn_credentials
from pipeline.waveforms.inventory import inline_inventory
from pipeline.waveforms.params import (
    FDSNStationQuery,
    InlineStations,
    StationSourceConfig,
    StationXMLStations,
)

log = logging.getLogger(__name__)


def query_inventory(
    cfg: FDSNStationQuery,
    starttime: datetime,
    endtime: datetime,
    credentials: Credentials | None = None,
) -> Inventory:
    """Stations with responses from an fdsnws-station service (network access), with the
    account ``credentials`` for restricted metadata.

    An http(s) base URL is used without service discovery, like the dataselect client.
    A transient failure (time-out, connection refused, HTTP 5xx) is retried ``cfg.retries``
    times with exponential backoff from ``cfg.backoff_s``.

    Raises:
        DataSourceError: no station matches, the service refused the request (HTTP 4xx), or
            it stayed unreachable through the retries; the message names the service.
    """
    from obspy.clients.fdsn.header import FDSNNoDataException

    attempt = 0
    while True:
        attempt += 1
        try:
            return _query_stations(cfg, starttime, endtime, credentials)
        except FDSNNoDataException:
            raise DataSourceError(
                "no station matches the query", field=f"stations ({cfg.base_url})"
            ) from None
        except Exception as exc:  # noqa: BLE001 - sorted into refused / transient below
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            if input_error(exc) is not None:
                raise DataSourceError(f"{cfg.base_url} refused the request: {reason}") from None
            if attempt > cfg.retries:
                raise DataSourceError(
                    f"FDSN station service {cfg.base_url} unreachable after {attempt} "
                    f"attempt(s): {reason}"
                ) from None
            delay = cfg.backoff_s * 2 ** (attempt - 1)
            log.warning("FDSN station query %s: %s; retry in %.1f s", cfg.base_url, reason, delay)
            time.sleep(delay)


def _query_stations(
    cfg: FDSNStationQuery,
    starttime: datetime,
    endtime: datetime,
    credentials: Credentials | None,
) -> Inventory:
    from pipeline.waveforms.fdsn import fdsn_client

    client = fdsn_client(cfg, credentials)
    kwargs = {
        "minlatitude": cfg.min_latitude,
        "maxlatitude": cfg.max_latitude,
        "minlongitude": cfg.min_longitude,
        "maxlongitude": cfg.max_longitude,
        "latitude": cfg.latitude,
        "longitude": cfg.longitude,
        "maxradius": cfg.max_radius_deg,
    }
    return client.get_stations(
        network=cfg.network,
        station=cfg.station,
        location=cfg.location,
        channel=cfg.channel,
        starttime=UTCDateTime(cfg.starttime or starttime),
        endtime=UTCDateTime(cfg.endtime or endtime),
        level="response",
        **{k: v for k, v in kwargs.items() if v is not None},
    )


def load_inventory(
    cfg: StationSourceConfig,
    starttime: datetime,
    endtime: datetime,
    secret_loader: Callable[[str], str] | None = None,
) -> Inventory:
    """The station inventory of a build from its station section (``secret_loader``: how a
    restricted FDSN station service's ``secret_block`` is read, :mod:`credentials`)."""
    if isinstance(cfg, InlineStations):
        return inline_inventory(cfg, starttime)
    if isinstance(cfg, StationXMLStations):
        if not cfg.path.is_file():
            raise EqcatInputError("StationXML file not found", path=cfg.path, field="stations.path")
        try:
            return read_inventory(str(cfg.path))
        except Exception as exc:  # noqa: BLE001 - ObsPy raises many kinds on a bad file
            why = _xml_syntax_error(cfg.path) or f"{type(exc).__name__}: {exc}"
            raise EqcatInputError(
                f"not a readable StationXML file ({why})",
                path=cfg.path,
                field="stations.path",
            ) from None
    return query_inventory(
        cfg, starttime, endtime, fdsn_credentials(cfg, "stations", secret_loader)
    )


def _xml_syntax_error(path: Path) -> str | None:
    """Where ``path`` stops being well-formed XML (a cut or damaged file), else None.

    ObsPy only says "Unknown format" for such a file; the XML parser names the line.
    """
    from lxml import etree

    try:
        etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return f"not well-formed XML: {exc}"
    except Exception:  # noqa: BLE001 - unreadable for another reason: the caller's message
        return None
    return None
