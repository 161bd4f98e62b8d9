"""The status grid: stores x dates, one symbol per partition state (pure rendering)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date

PLANNED = "planned"  # dry run: the policy would run this partition

SYMBOLS: dict[str, str] = {
    "completed": "✅",
    "failed": "❌",
    "missing": "⬜",
    "in_flight": "⏳",
    "stale": "🟨",
    PLANNED: "🔵",
}
LEGEND_TEXT: dict[str, str] = {
    "completed": "completed",
    "failed": "failed",
    "missing": "missing (never built)",
    "in_flight": "in flight",
    "stale": "stale (source changed since it was built)",
    PLANNED: "would run (dry run)",
}
# Long ranges: show at most this many date rows, the most recent ones.
MAX_ROWS = 400


def legend() -> str:
    return "  ".join(f"{SYMBOLS[k]} {LEGEND_TEXT[k]}" for k in SYMBOLS)


def summarize(states: Mapping[tuple[str, date], str]) -> str:
    counts = Counter(str(v) for v in states.values())
    parts = [f"{counts[k]} {k.replace('_', ' ')}" for k in SYMBOLS if counts.get(k)]
    return f"{len(states)} partitions: " + (", ".join(parts) if parts else "none")


def grid_rows(
    states: Mapping[tuple[str, date], str], stores: Sequence[str], dates: Sequence[date]
) -> list[list[str]]:
    """Rows = dates (newest last), columns = stores; '' where a store has no partition."""
    rows = []
    for ds in dates:
        cells = []
        for sid in stores:
            state = states.get((sid, ds))
            cells.append(SYMBOLS.get(str(state), "?") if state is not None else "")
        rows.append([ds.isoformat(), *cells])
    return rows


def render_markdown(
    states: Mapping[tuple[str, date], str],
    *,
    title: str,
    stores: Sequence[str] | None = None,
    note: str | None = None,
) -> str:
    stores = list(stores) if stores is not None else sorted({k[0] for k in states})
    dates = sorted({k[1] for k in states})
    hidden = 0
    if len(dates) > MAX_ROWS:
        hidden = len(dates) - MAX_ROWS
        dates = dates[-MAX_ROWS:]
    lines = [f"## {title}", "", summarize(states), ""]
    if note:
        lines += [f"_{note}_", ""]
    lines += [f"Legend: {legend()}", ""]
    if not states:
        lines.append("_Nothing in range._")
        return "\n".join(lines) + "\n"
    if hidden:
        lines += [f"_{hidden} older dates not shown._", ""]
    lines.append("| ds | " + " | ".join(stores) + " |")
    lines.append("|---|" + "---|" * len(stores))
    for row in grid_rows(states, stores, dates):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
