"""The three dashboard numbers as text and as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from sentiment_workers.adapters.mysql import Report


def format_report(report: Report) -> str:
    """Plain-text report: total, count by sentiment, messages per day."""
    lines = [f"total messages: {report.total}", "by sentiment:"]
    lines += [f"  {label:<12} {n:>8}" for label, n in sorted(report.by_label.items())]
    lines.append("messages per day (ingest date):")
    lines += [f"  {day.isoformat()} {n:>8}" for day, n in report.per_day]
    return "\n".join(lines)


def draw_report(report: Report, path: Path) -> Path:
    """Write a three-panel PNG (total, by sentiment, per day) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_total, ax_label, ax_day) = plt.subplots(
        1, 3, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 2, 3]}
    )
    ax_total.axis("off")
    ax_total.text(0.5, 0.55, f"{report.total:,}", ha="center", va="center", fontsize=34, weight="bold")
    ax_total.text(0.5, 0.25, "messages classified", ha="center", va="center", fontsize=12)

    labels = sorted(report.by_label)
    colours = {"negative": "#d62728", "neutral": "#7f7f7f", "positive": "#2ca02c"}
    bars = ax_label.bar(
        labels, [report.by_label[k] for k in labels], color=[colours.get(k, "#1f77b4") for k in labels]
    )
    ax_label.set_title("Count by sentiment")
    ax_label.bar_label(bars, labels=[f"{report.by_label[k]:,}" for k in labels], padding=2)
    ax_label.margins(y=0.12)  # room for the count above the tallest bar

    days = [d.isoformat() for d, _ in report.per_day]
    ax_day.bar(days, [n for _, n in report.per_day], color="#1f77b4")
    ax_day.set_title("Messages per day")
    ax_day.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
