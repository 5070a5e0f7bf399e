"""Report figures (matplotlib, Agg backend), each written atomically to a PNG file.

Every function takes plain tables / a :class:`~pipeline.completeness.CompletenessResult`
and an output path, and returns the path. Times are UTC; magnitudes in magnitude units;
depths in km (positive down).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from pipeline.completeness import CompletenessResult  # noqa: E402
from pipeline.report.coastlines import draw_boundaries  # noqa: E402
from pipeline.rundir import atomic_path  # noqa: E402
from pipeline.wording import counted

DPI = 110


def register_bundled_fonts() -> int:
    """Make sure matplotlib knows the fonts it ships (DejaVu, STIX, Computer Modern).

    matplotlib caches its font list per user (``~/.cache/matplotlib``), keyed only by the
    font manager's version, so a list written by another matplotlib (a distribution's
    package without bundled fonts, a deleted virtual environment) is read as is: the report
    then logged "findfont: Font family ['cmsy10'] not found" for every math label and drew
    with fallbacks. Fonts of matplotlib's own data folder missing from the list are added.

    Returns:
        how many fonts were added (0 with a current cache).
    """
    known = {Path(entry.fname).resolve() for entry in font_manager.fontManager.ttflist}
    bundled = Path(matplotlib.get_data_path(), "fonts", "ttf").resolve()
    missing = sorted(p for p in bundled.glob("*.ttf") if p not in known)
    for path in missing:
        font_manager.fontManager.addfont(str(path))
    return len(missing)


register_bundled_fonts()
MC_STYLES = {
    "maxc": ("tab:orange", "--"),
    "gft90": ("tab:green", ":"),
    "gft95": ("tab:olive", "-."),
    "mbs": ("tab:purple", "--"),
}


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _empty(path: str | Path, title: str, message: str) -> Path:
    """A placeholder figure that says why there is nothing to plot."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return _save(fig, path)


def plot_fmd(
    result: CompletenessResult,
    path: str | Path,
    reference: CompletenessResult | None = None,
    reference_name: str = "reference",
) -> Path:
    """Cumulative and incremental FMD with the G–R fit above Mc and every Mc marked.

    With ``reference`` (another catalog's completeness result, e.g. the STA/LTA baseline or
    JMA), its cumulative FMD and selected Mc are drawn in grey for comparison.
    """
    if not result.fmd:
        return _empty(path, "Frequency–magnitude distribution", result.reason or "no magnitudes")
    bins = np.asarray(result.fmd["bins"], dtype=float)
    inc = np.asarray(result.fmd["incremental"], dtype=float)
    cum = np.asarray(result.fmd["cumulative"], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.semilogy(bins, cum, "o", ms=4, color="black", label="cumulative N(≥M)")
    ax.semilogy(
        bins[inc > 0], inc[inc > 0], "s", ms=4, mfc="none", color="tab:blue", label="incremental"
    )
    if result.estimable:
        fit_m = bins[bins >= result.mc_selected - 1e-9]
        fit = 10 ** (result.a - result.b * fit_m)
        label = f"G–R fit: b = {result.b:.2f} ± {result.b_std:.2f}, a = {result.a:.2f}"
        ax.semilogy(fit_m, fit, "-", color="tab:red", label=label)
    if reference is not None and reference.fmd:
        ref_bins = np.asarray(reference.fmd["bins"], dtype=float)
        ref_cum = np.asarray(reference.fmd["cumulative"], dtype=float)
        ax.semilogy(ref_bins, ref_cum, "^", ms=4, color="gray", label=f"{reference_name}: N(≥M)")
        if math.isfinite(reference.mc_selected):
            ax.axvline(
                reference.mc_selected,
                color="gray",
                ls="-",
                lw=1,
                label=f"{reference_name}: Mc = {reference.mc_selected:.1f}",
            )
    for key, est in result.mc.items():
        if math.isfinite(est.mc):
            color, style = MC_STYLES.get(key, ("gray", ":"))
            ax.axvline(est.mc, color=color, ls=style, label=f"Mc {key.upper()} = {est.mc:.1f}")
    ax.set_xlabel(f"Magnitude (bin {result.delta_m:g})")
    ax.set_ylabel("Number of events")
    ax.set_title(f"Frequency–magnitude distribution ({counted(result.n_valid, 'event')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_mc_b_time(result: CompletenessResult, path: str | Path) -> Path:
    """Mc (every method) and b ± sigma in moving windows of N events against time.

    Each point is one window, placed at its median event time; the grey band under the Mc
    panel spans the first window (how much time one point averages over).
    """
    windows = pd.DataFrame(result.time_windows)
    if windows.empty:
        return _empty(
            path,
            "Mc and b through time",
            "too few events with magnitude and time for moving windows "
            f"({counted(result.n_valid, 'event')})",
        )
    t = pd.to_datetime(windows["median_time"], utc=True, format="ISO8601")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key in result.mc:
        column = f"mc_{key}"
        if column in windows:
            color, style = MC_STYLES.get(key, ("gray", ":"))
            ax1.plot(t, windows[column], style, color=color, marker=".", label=key.upper())
    ax1.plot(
        t,
        windows["mc"],
        "-",
        color="black",
        lw=2,
        marker="o",
        ms=4,
        label=f"used ({result.config['mc_method']})",
    )
    first = windows.iloc[0]
    if {"start_time", "end_time"} <= set(windows.columns):
        ax1.axvspan(
            pd.Timestamp(first["start_time"]),
            pd.Timestamp(first["end_time"]),
            color="gray",
            alpha=0.12,
            label="span of the first window",
        )
    ax1.set_ylabel("Mc")
    ax1.legend(fontsize=8, ncol=3)
    ax1.grid(alpha=0.3)
    ax2.errorbar(t, windows["b"], yerr=windows["b_std"], fmt="o-", ms=3, color="tab:red")
    ax2.set_ylabel("b-value (± Shi–Bolt σ)")
    ax2.set_xlabel("Time (UTC, window median)")
    ax2.grid(alpha=0.3)
    n = int(first["n_events"])
    step = first.get("step_events")
    step_text = f", step {int(step)}" if step is not None and pd.notna(step) else ""
    ax1.set_title(f"Mc and b in {len(windows)} moving windows of {n} events{step_text}")
    ax2.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax2.xaxis.get_major_locator()))
    return _save(fig, path)


def plot_b_vs_cutoff(result: CompletenessResult, path: str | Path) -> Path:
    """b ± Shi–Bolt sigma as a function of the cut-off magnitude, with the chosen Mc."""
    cut = result.b_by_cutoff
    if not cut:
        return _empty(path, "b versus cut-off magnitude", result.reason or "no magnitudes")
    mc = np.asarray(cut["mc"], dtype=float)
    b = np.asarray(cut["b"], dtype=float)
    std = np.asarray(cut["b_std"], dtype=float)
    ok = np.isfinite(b)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.errorbar(mc[ok], b[ok], yerr=std[ok], fmt="o", ms=3, color="tab:red", capsize=2)
    if result.estimable:
        ax.axvline(
            result.mc_selected, color="black", ls="--", label=f"Mc = {result.mc_selected:.1f}"
        )
        ax.axhline(result.b, color="gray", ls=":", label=f"b = {result.b:.2f}")
        ax.legend(fontsize=8)
    ax.set_xlabel("Cut-off magnitude")
    ax.set_ylabel("b-value (Aki–Utsu)")
    ax.set_title("b versus cut-off magnitude")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _associator_only(events: pd.DataFrame) -> np.ndarray:
    """Mask of events that carry only the associator's origin (no locator solution)."""
    stage = events.get("location_stage")
    if stage is None:
        return np.zeros(len(events), dtype=bool)
    return (stage == "association").to_numpy()


#: Earth radius (km) for the scale bar's km-per-degree (mean radius, IUGG).
EARTH_RADIUS_KM = 6371.0


def nice_length(target: float) -> float:
    """The 1-2-5 × 10^k number nearest below ``target`` (> 0), e.g. 7.3 -> 5, 0.34 -> 0.2."""
    exponent = math.floor(math.log10(target))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= target:
            return mantissa * 10**exponent
    return 10**exponent


def add_scale_bar(ax: plt.Axes, latitude: float) -> float:
    """Draw a km scale bar on a lon/lat map of mean ``latitude`` (°); return its length (km).

    The bar is about a quarter of the map's width, rounded down to 1-2-5 × 10^k km; one
    degree of longitude is 2π R cos(latitude) / 360 km (spherical Earth).
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    km_per_deg = 2 * math.pi * EARTH_RADIUS_KM * math.cos(math.radians(latitude)) / 360
    x0, x1 = ax.get_xlim()
    length_km = nice_length(max(abs(x1 - x0) * km_per_deg / 4, 1e-3))
    bar = AnchoredSizeBar(
        ax.transData,
        length_km / km_per_deg,
        f"{length_km:g} km",
        "lower right",
        pad=0.5,
        sep=4,
        frameon=True,
        size_vertical=0,
        fontproperties={"size": 9},
    )
    bar.patch.set_alpha(0.8)
    ax.add_artist(bar)
    return length_km


def _colours(located: pd.DataFrame, color_by: str) -> tuple[pd.Series, str, bool]:
    """(values, colour-bar label, values are matplotlib dates) of the map's colour."""
    if color_by == "origin_time":
        times = pd.to_datetime(located["origin_time"], utc=True).dt.tz_localize(None)
        return pd.Series(mdates.date2num(times), index=located.index), "origin time (UTC)", True
    return located[color_by].astype(float), color_by.replace("_", " "), False


def plot_epicentres(
    events: pd.DataFrame,
    stations: pd.DataFrame | None,
    path: str | Path,
    color_by: str = "depth_km",
) -> tuple[Path, str | None]:
    """Epicentre map (lon/lat), sized by magnitude, coloured by ``color_by``; stations as ▲.

    The colour bar spans exactly the coloured events' values (origin times as dates); a km
    scale bar sits in the lower right; coastlines and borders (GSHHG, see
    :mod:`pipeline.report.coastlines`) lie beneath. Events with only the associator's origin
    (``location_stage == "association"``) are grey crosses: their epicentres are rough.

    Returns:
        the PNG's path and None, or why the map has no coastlines (data not installed).
    """
    if events.empty:
        return _empty(path, "Epicentres", "no located events"), None
    rough = _associator_only(events)
    located = events[~rough]
    fig, ax = plt.subplots(figsize=(7, 6))
    colors, clabel, dates = _colours(located, color_by)
    finite = colors[np.isfinite(colors)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + (1 / 24 if dates else 1.0)
    mag = located.get("magnitude", pd.Series(np.nan, index=located.index))
    sizes = np.where(np.isfinite(mag), 4 + 6 * np.clip(mag.fillna(0) + 1, 0, 6) ** 1.5, 8)
    sc = ax.scatter(
        located["longitude"],
        located["latitude"],
        c=colors,
        s=sizes,
        cmap="viridis",
        vmin=vmin,
        vmax=vmax,
        edgecolors="k",
        linewidths=0.2,
    )
    if dates:
        clabel = f"{clabel}, first {mdates.num2date(vmin):%Y-%m-%d %H:%M}"
    bar = fig.colorbar(sc, ax=ax, label=clabel)
    if dates:
        locator = mdates.AutoDateLocator()
        bar.ax.yaxis.set_major_locator(locator)
        bar.ax.yaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=False))
    if rough.any():
        ax.plot(
            events.loc[rough, "longitude"],
            events.loc[rough, "latitude"],
            "x",
            color="gray",
            ms=4,
            label=f"associator origin only ({int(rough.sum())})",
        )
    if stations is not None and not stations.empty:
        ax.plot(
            stations["longitude"],
            stations["latitude"],
            "^",
            color="tab:red",
            ms=7,
            mec="k",
            label="stations",
        )
    if rough.any() or (stations is not None and not stations.empty):
        ax.legend(fontsize=8, loc="upper left")
    mean_lat = float(events["latitude"].mean())
    ax.set_xlabel("Longitude (°)")
    ax.set_ylabel("Latitude (°)")
    ax.set_aspect(1 / max(math.cos(math.radians(mean_lat)), 0.1))
    coastline_note = draw_boundaries(ax)
    add_scale_bar(ax, mean_lat)
    ax.set_title(f"Epicentres ({counted(len(events), 'event')}), size ~ magnitude")
    ax.grid(alpha=0.3)
    return _save(fig, path), coastline_note


def plot_depth_sections(events: pd.DataFrame, path: str | Path) -> Path:
    """Depth against longitude and against latitude (associator-only origins as grey ×)."""
    if events.empty:
        return _empty(path, "Depth sections", "no located events")
    rough = _associator_only(events)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, column in ((ax1, "longitude"), (ax2, "latitude")):
        ax.scatter(
            events.loc[~rough, column],
            events.loc[~rough, "depth_km"],
            s=8,
            c="tab:blue",
            alpha=0.7,
            label="located",
        )
        if rough.any():
            ax.plot(
                events.loc[rough, column],
                events.loc[rough, "depth_km"],
                "x",
                color="gray",
                ms=4,
                label="associator origin only",
            )
        ax.set_xlabel(f"{column.capitalize()} (°)")
        ax.grid(alpha=0.3)
    if rough.any():
        ax2.legend(fontsize=8)
    ax1.set_ylabel("Depth (km)")
    ax1.invert_yaxis()
    fig.suptitle("Depth sections (W–E and S–N)")
    return _save(fig, path)


#: Spans shorter than this (days) get events per hour, longer ones events per day.
HOURLY_BELOW_DAYS = 3.0


def rate_bin(events: pd.DataFrame) -> str:
    """``"hour"`` when the events span under :data:`HOURLY_BELOW_DAYS` days, else ``"day"``."""
    if events.empty:
        return "day"
    span = events["origin_time"].max() - events["origin_time"].min()
    return "hour" if span < pd.Timedelta(days=HOURLY_BELOW_DAYS) else "day"


def plot_event_rate(events: pd.DataFrame, path: str | Path) -> Path:
    """Events per hour (span < 3 days) or per UTC day as bars, with the cumulative count.

    Empty bins between the first and the last event are drawn as zero; the cumulative line
    steps up at every event's origin time.
    """
    unit = rate_bin(events)
    if events.empty:
        return _empty(path, f"Events per {unit}", "no events")
    times = events["origin_time"].sort_values()
    freq = "h" if unit == "hour" else "D"
    counts = times.dt.floor(freq).value_counts()
    bins = pd.date_range(counts.index.min(), counts.index.max(), freq=freq)
    counts = counts.reindex(bins, fill_value=0)
    width = (1 / 24 if unit == "hour" else 1.0) * 0.85  # matplotlib date units: days
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(bins, counts.to_numpy(), width=width, align="edge", color="tab:blue")
    ax.set_ylabel(f"Events per {unit}")
    ax2 = ax.twinx()
    cumulative = np.arange(1, len(times) + 1)
    ax2.step(times, cumulative, where="post", color="black", lw=1.5, label="cumulative")
    ax2.set_ylim(0, len(times) * 1.05)
    ax2.set_ylabel("Cumulative number of events")
    ax2.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Events per {unit} (UTC), {len(times)} in all")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    return _save(fig, path)


def plot_histograms(
    series: dict[str, pd.Series], path: str | Path, title: str, bins: int = 40
) -> Path:
    """Side-by-side histograms of named series (e.g. P and S pick probabilities)."""
    series = {k: v.dropna() for k, v in series.items() if v is not None and v.notna().any()}
    if not series:
        return _empty(path, title, "no values")
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items(), strict=True):
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
        ax.set_title(f"{name} (n={values.size})", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
