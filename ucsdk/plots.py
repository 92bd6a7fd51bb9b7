"""Plots of what NAT traversal does, as matplotlib figures for notebooks and the docs.

Each function takes a frame ucsdk already returns and gives back a
``matplotlib.figure.Figure`` (``fig.savefig("x.png")`` or ``"x.svg"`` for the docs):

* :func:`metrics` — ``node.metrics_history()``: connections over time, direct and relayed;
* :func:`rtt` — ``punch_trials(..., measure_rtt=True)``: the round trip over the relay
  against the direct one after the punch, per NAT pair;
* :func:`time_to_direct` — ``punch_trials``: how long each success took;
* :func:`success_heatmap` — ``success_rates(trials)``: success rate by NAT pair, one
  panel per transport.

``frame.ucsdk.plot()`` picks the right one from a frame's columns. :func:`sparkline`
draws a small inline SVG (no matplotlib) for the dashboard.

matplotlib: the reference Python plotting library, well kept (3.11, 2026), renders PNG
and SVG offline with its Agg backend, and notebooks show its figures with no extension.

Example:
    >>> import pandas as pd
    >>> rates = pd.DataFrame({"dialer_nat": ["cone", "cone"], "target_nat": ["cone", "sym"],
    ...     "transport": ["tcp", "tcp"], "success_rate": [1.0, 0.0], "trials": [3, 3]})
    >>> fig = success_heatmap(rates)
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()]
    ['tcp']
    >>> rates.ucsdk.plot() is not None
    True
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ucsdk import errors

METRIC_LINES = ("active_connections", "direct_connections", "relay_connections")


def _figure(width: float = 6.4, height: float = 3.6) -> Any:
    from matplotlib.figure import Figure

    class Plot(Figure):
        """A Figure that shows itself in a notebook (as PNG) without pyplot."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=96)
            return buffer.getvalue()

    # A bare Figure (not pyplot): no global state, no GUI backend, safe from any thread.
    return Plot(figsize=(width, height), layout="constrained")


def _need(frame: Any, columns: Sequence[str], what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise errors.InvalidInput("frame", type(frame).__name__, f"a DataFrame ({what})")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise errors.InvalidInput("frame", ", ".join(missing), f"the columns of {what}")
    return frame


def metrics(history: pd.DataFrame, columns: Sequence[str] = METRIC_LINES) -> Any:
    """Lines over time from ``node.metrics_history()`` (by default: active, direct and
    relayed connections; a hole punch shows as relayed going down as direct goes up)."""
    _need(history, ["last_updated", *columns], "node.metrics_history()")
    fig = _figure()
    ax = fig.add_subplot()
    # Lines often coincide (all connections direct): each is drawn thinner than the one
    # before, so that none hides another.
    for i, name in enumerate(columns):
        width = max(1.0, 1.2 * (len(columns) - i) + 0.3)
        ax.step(history["last_updated"], history[name], where="post", label=name, lw=width)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("count")
    ax.set_title("connections over time")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return fig


def _pairs(trials: pd.DataFrame) -> pd.Series:
    return trials["dialer_nat"].astype(str) + " → " + trials["target_nat"].astype(str)


def rtt(trials: pd.DataFrame) -> Any:
    """Round trip over the relay (what DCUtR measured before punching) against the direct
    one after the punch, per NAT pair and transport: median of the successful trials."""
    cols = ["dialer_nat", "target_nat", "transport", "success", "relayed_rtt_ms"]
    _need(trials, [*cols, "direct_rtt_ms"], "punch_trials(..., measure_rtt=True)")
    won = trials[trials["success"].astype(bool)].copy()
    won["pair"] = _pairs(won) + " (" + won["transport"].astype(str) + ")"
    table = won.groupby("pair")[["relayed_rtt_ms", "direct_rtt_ms"]].median()
    fig = _figure()
    ax = fig.add_subplot()
    if len(table):
        table.plot.bar(ax=ax, rot=0, color=["#7f7f7f", "#1f77b4"])
        ax.legend(["relayed", "direct"], fontsize="small")
    else:
        ax.text(0.5, 0.5, "no successful punch", ha="center", va="center")
    ax.set_xlabel("")
    ax.set_ylabel("round trip (ms)")
    ax.set_title("RTT before and after the hole punch")
    ax.grid(axis="y", alpha=0.3)
    return fig


def time_to_direct(trials: pd.DataFrame) -> Any:
    """Each successful trial's time from the relayed connection to the direct one, per NAT
    pair and transport (one dot per trial, the median as a bar)."""
    cols = ["dialer_nat", "target_nat", "transport", "success", "time_to_direct_ms"]
    _need(trials, cols, "punch_trials()")
    won = trials[trials["success"].astype(bool)].copy()
    won["pair"] = _pairs(won) + " (" + won["transport"].astype(str) + ")"
    fig = _figure()
    ax = fig.add_subplot()
    labels = sorted(won["pair"].unique())
    for i, label in enumerate(labels):
        values = won.loc[won["pair"] == label, "time_to_direct_ms"].astype(float)
        ax.bar(i, values.median(), color="#c6dbef", width=0.6)
        ax.scatter([i] * len(values), values, color="#1f77b4", zorder=3, s=18)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    if not labels:
        ax.text(0.5, 0.5, "no successful punch", ha="center", va="center")
    ax.set_ylabel("time to direct (ms)")
    ax.set_title("How long the upgrade to a direct connection took")
    ax.grid(axis="y", alpha=0.3)
    return fig


def success_heatmap(rates: pd.DataFrame) -> Any:
    """Success rate by dialer NAT (rows) and target NAT (columns), one panel per
    transport, from ``success_rates(trials)``; each cell shows the rate and the trials."""
    cols = ["dialer_nat", "target_nat", "transport", "success_rate", "trials"]
    _need(rates, cols, "success_rates()")
    transports = sorted(rates["transport"].astype(str).unique()) or ["—"]
    fig = _figure(3.6 * len(transports) + 0.8, 3.4)
    axes = fig.subplots(1, len(transports), squeeze=False)[0]
    image = None
    # The same rows and columns in every panel, so that panels compare cell by cell.
    dialers = sorted(rates["dialer_nat"].astype(str).unique())
    targets = sorted(rates["target_nat"].astype(str).unique())
    for ax, transport in zip(axes, transports, strict=True):
        part = rates[rates["transport"].astype(str) == transport].astype(
            {"dialer_nat": str, "target_nat": str}
        )
        grid = part.pivot_table(
            index="dialer_nat", columns="target_nat", values="success_rate", aggfunc="mean"
        ).reindex(index=dialers, columns=targets)
        counts = part.pivot_table(
            index="dialer_nat", columns="target_nat", values="trials", aggfunc="sum"
        ).reindex(index=dialers, columns=targets)
        image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn")
        ax.set_xticks(range(len(grid.columns)), list(grid.columns), rotation=30, ha="right")
        ax.set_yticks(range(len(grid.index)), list(grid.index))
        for (r, c), value in _cells(grid):
            n = counts.iloc[r, c]
            text = "—" if math.isnan(value) else f"{value:.0%}\nn={int(n)}"
            ax.text(c, r, text, ha="center", va="center", fontsize="small")
        ax.set_title(transport)
        ax.set_xlabel("target NAT")
        ax.set_ylabel("dialer NAT")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="success rate", shrink=0.8)
    return fig


def _cells(grid: pd.DataFrame) -> list[tuple[tuple[int, int], float]]:
    values = grid.to_numpy(dtype=float)
    return [
        ((r, c), float(values[r, c]))
        for r in range(values.shape[0])
        for c in range(values.shape[1])
    ]


def sparkline(values: Sequence[float], *, width: int = 80, height: int = 16) -> str:
    """A tiny inline SVG line of ``values`` (the dashboard's metrics); empty for fewer
    than two.

    Example:
        >>> sparkline([0, 1, 3, 2]).startswith("<svg")
        True
    """
    points = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if len(points) < 2:
        return ""
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    step = width / (len(points) - 1)
    coords = " ".join(
        f"{i * step:.1f},{height - 2 - (p - low) / span * (height - 4):.1f}"
        for i, p in enumerate(points)
    )
    title = html.escape(f"{points[0]:g} → {points[-1]:g} (min {low:g}, max {high:g})")
    return (
        f"<svg class='ucsdk-sparkline' width='{width}' height='{height}'>"
        f"<title>{title}</title><polyline points='{coords}' fill='none' "
        "stroke='#1f77b4' stroke-width='1.5'/></svg>"
    )


@pd.api.extensions.register_dataframe_accessor("ucsdk")
class UcsdkAccessor:
    """``frame.ucsdk.plot()``: the plot that fits a ucsdk frame (a success-rate table, punch
    trials, or a metrics history); ``frame.ucsdk.plot("rtt")`` asks for one by name."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def plot(self, kind: str | None = None) -> Any:
        kinds = {
            "success_heatmap": success_heatmap,
            "rtt": rtt,
            "time_to_direct": time_to_direct,
            "metrics": metrics,
        }
        if kind is None:
            cols = set(self._frame.columns)
            if {"success_rate", "target_nat"} <= cols:
                kind = "success_heatmap"
            elif {"time_to_direct_ms", "target_nat"} <= cols:
                kind = "time_to_direct"
            elif "last_updated" in cols:
                kind = "metrics"
            else:
                raise errors.InvalidInput(
                    "frame",
                    ", ".join(map(str, self._frame.columns))[:200],
                    "a frame from success_rates(), punch_trials() or metrics_history()",
                )
        if kind not in kinds:
            raise errors.InvalidInput("kind", kind, f"one of {', '.join(kinds)}")
        return kinds[kind](self._frame)
