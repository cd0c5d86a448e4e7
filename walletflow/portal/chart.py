"""The spend chart: an inline SVG bar chart drawn on the server (no JavaScript, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from walletflow.portal.views import DailySpend, format_amount

WIDTH, HEIGHT, PAD_TOP, PAD_BOTTOM = 600, 160, 10, 20


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


def bars(days: list[DailySpend], scale: int, asset: str) -> list[Bar]:
    """One bar per day, heights proportional to the largest day (all zero: flat bars)."""
    if not days:
        return []
    peak = max(d.amount for d in days)
    slot = WIDTH / len(days)
    plot = HEIGHT - PAD_TOP - PAD_BOTTOM
    out = []
    for i, d in enumerate(days):
        height = 0.0 if peak <= 0 else plot * d.amount / peak
        out.append(Bar(round(i * slot + 1, 2), round(PAD_TOP + plot - height, 2), round(slot - 2, 2),
                       round(height, 2), f"{d.day.isoformat()}: {format_amount(d.amount, scale)} {asset}"))
    return out


def svg(days: list[DailySpend], scale: int, asset: str) -> str:
    """The chart as an ``<svg>`` element; every bar carries a ``<title>`` with its day and amount."""
    parts = [
        (f'<svg class="spend-chart" data-asset="{escape(asset)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
         f'role="img" aria-label="{escape(asset)} spend per day, last {len(days)} days" '
         f'xmlns="http://www.w3.org/2000/svg">'),
        f'<line x1="0" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - PAD_BOTTOM}" class="axis"/>',
    ]
    for bar, day in zip(bars(days, scale, asset), days, strict=True):
        parts.append(
            f'<rect class="bar" data-day="{day.day.isoformat()}" data-amount="{day.amount}" x="{bar.x}" y="{bar.y}" '
            f'width="{bar.width}" height="{bar.height}"><title>{escape(bar.label)}</title></rect>'
        )
    if days:
        parts.append(f'<text x="0" y="{HEIGHT - 4}" class="tick">{days[0].day.isoformat()}</text>')
        parts.append(f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end" class="tick">{days[-1].day.isoformat()}</text>')
    parts.append("</svg>")
    return "".join(parts)
