"""Gantt chart of one strategy run: a row per store, a bar per partition."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.analysis import ChildTiming  # noqa: E402

STATE_COLOURS = {
    "COMPLETED": "#2e7d32",
    "FAILED": "#c62828",
    "CRASHED": "#6a1b9a",
    "CANCELLED": "#757575",
}
WAIT_COLOUR = "#cfd8dc"


def draw(
    children: list[ChildTiming],
    path: Path,
    title: str,
    makespan: float,
    ideal: float,
    x_max: float | None = None,
) -> Path:
    stores = sorted({c.store_id for c in children})
    rows = {store: i for i, store in enumerate(stores)}
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(stores) + 2.4), dpi=110)
    # Light first, dark on top: waiting runs of one store overlap (ENQUEUE), and must not
    # hide another run's dbt work.
    for c in children:
        end = c.end if c.end is not None else makespan
        ax.barh(
            rows[c.store_id], end - c.created, left=c.created, height=0.7,
            color=WAIT_COLOUR, alpha=0.55, zorder=1,
        )  # fmt: skip
    for c in children:
        if c.work_start is not None and c.work_end is not None:
            ax.barh(
                rows[c.store_id], c.work, left=c.work_start, height=0.7,
                color=STATE_COLOURS.get(c.state, "#000000"), edgecolor="white",
                linewidth=0.6, zorder=2,
            )  # fmt: skip
    ax.axvline(ideal, color="#1565c0", linestyle="--", linewidth=1, zorder=3)
    ax.axvline(makespan, color="#000000", linewidth=1, zorder=3)
    ax.set_yticks(range(len(stores)), stores)
    ax.invert_yaxis()
    ax.set_xlim(0, (x_max or makespan) * 1.02)
    ax.set_xlabel("seconds since the backfill was triggered")
    ax.set_title(title)
    ax.legend(
        handles=[
            Patch(color=STATE_COLOURS["COMPLETED"], label="dbt work (completed)"),
            Patch(color=STATE_COLOURS["FAILED"], label="dbt work (failed)"),
            Patch(color=WAIT_COLOUR, label="run exists, not in dbt (queued, starting, slot wait)"),
            plt.Line2D([], [], color="#1565c0", linestyle="--", label=f"ideal {ideal:.0f}s"),
            plt.Line2D([], [], color="#000000", label=f"makespan {makespan:.0f}s"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
