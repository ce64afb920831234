"""Calls per hour, answered vs not answered, as a server-rendered SVG bar chart (no JavaScript)."""
from __future__ import annotations

from datetime import datetime
from html import escape

WIDTH, HEIGHT, MARGIN = 720, 220, 30
ANSWERED_COLOUR, MISSED_COLOUR = "#2e7d32", "#c62828"


def calls_per_hour_svg(hours: list[tuple[datetime, int, int]], *, answered_label: str, missed_label: str) -> str:
    """One pair of bars per hour (answered, not answered), the hour under every third pair."""
    top = max([max(a, m) for _, a, m in hours] + [1])
    slot = (WIDTH - 2 * MARGIN) / max(len(hours), 1)
    bar = max(slot / 2 - 1, 1)
    plot = HEIGHT - 2 * MARGIN
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-label="{escape(answered_label)} / {escape(missed_label)}">',
             f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#888"/>',
             f'<text x="{MARGIN}" y="{MARGIN - 10}" font-size="11">{top}</text>']
    for index, (hour, answered, missed) in enumerate(hours):
        x = MARGIN + index * slot
        for offset, count, colour, label in ((0, answered, ANSWERED_COLOUR, answered_label),
                                             (bar + 1, missed, MISSED_COLOUR, missed_label)):
            height = plot * count / top
            parts.append(f'<rect class="bar" data-hour="{hour:%H}" data-kind="{"answered" if offset == 0 else "missed"}" '
                         f'data-count="{count}" x="{x + offset:.1f}" y="{HEIGHT - MARGIN - height:.1f}" '
                         f'width="{bar:.1f}" height="{height:.1f}" fill="{colour}">'
                         f'<title>{hour:%H}:00 {escape(label)}: {count}</title></rect>')
        if index % 3 == 0:
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - MARGIN + 14}" font-size="10">{hour:%H}h</text>')
    legend_y = HEIGHT - 6
    parts.append(f'<rect x="{MARGIN}" y="{legend_y - 9}" width="10" height="10" fill="{ANSWERED_COLOUR}"/>'
                 f'<text x="{MARGIN + 14}" y="{legend_y}" font-size="11">{escape(answered_label)}</text>'
                 f'<rect x="{MARGIN + 140}" y="{legend_y - 9}" width="10" height="10" fill="{MISSED_COLOUR}"/>'
                 f'<text x="{MARGIN + 154}" y="{legend_y}" font-size="11">{escape(missed_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
