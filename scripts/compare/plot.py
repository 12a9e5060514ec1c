"""Plots `oxcol-bench compare` reports: delivered points/s against CPU (% of one core) and
peak RSS, one colour per system; every run is a dot, the medians per load are joined.

    .venv/bin/python scripts/compare/plot.py docs/compare-throughput-cpu.png REPORT.json...
"""
import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(out, paths):
    runs = []
    title_bits = []
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        runs += [r for r in report["runs"] if r.get("error") is None and r.get("rate") is not None]
        m = report["machine"]
        title_bits.append(f"load avg {m['loadavg_start'][0]:.1f}-{m['loadavg_end'][0]:.1f}")
    systems = list(dict.fromkeys(r["system"] for r in runs))
    fig, (ax_cpu, ax_rss) = plt.subplots(1, 2, figsize=(12, 5))
    for i, system in enumerate(systems):
        colour = f"C{i}"
        mine = [r for r in runs if r["system"] == system]
        xs = [r["delivered_points_per_sec"] for r in mine]
        ax_cpu.scatter(xs, [r["cpu_percent"] for r in mine], color=colour, alpha=0.35, s=14)
        ax_rss.scatter(xs, [r["rss_peak_mib"] for r in mine], color=colour, alpha=0.35, s=14)
        medians = []
        for rate in sorted({r["rate"] for r in mine}, key=lambda r: float("inf") if r == 0 else r):
            at = [r for r in mine if r["rate"] == rate]
            medians.append((
                statistics.median(r["delivered_points_per_sec"] for r in at),
                statistics.median(r["cpu_percent"] for r in at),
                statistics.median(r["rss_peak_mib"] for r in at),
            ))
        medians.sort()
        ax_cpu.plot([m[0] for m in medians], [m[1] for m in medians], "-o", color=colour, label=system)
        ax_rss.plot([m[0] for m in medians], [m[2] for m in medians], "-o", color=colour, label=system)
    for ax, label in ((ax_cpu, "CPU of the collector's processes, % of one core"), (ax_rss, "peak RSS, MiB")):
        ax.set_xlabel("points/s delivered to the sink")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.ticklabel_format(axis="x", style="sci", scilimits=(3, 3))
    ax_cpu.set_title("OTLP/gRPC -> batch -> OTLP/gRPC: CPU")
    ax_rss.set_title("memory")
    fig.suptitle(
        "oxcol-bench compare, 2-core VM shared with other builds (" + "; ".join(title_bits)
        + "); dots = runs, lines = medians per offered rate (rightmost = flat out)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: plot.py OUT.png REPORT.json...")
    main(sys.argv[1], sys.argv[2:])
