"""Plots the RSS curve of the overload test (integration/tests/overload.rs) from the CSV it
writes with OXCOL_OVERLOAD_CSV=path: RSS against the memory_limiter limit and soft limit,
and the sink's delivered points per second, with the phases shaded.

    .venv/bin/pip install -r docs/requirements.txt
    .venv/bin/python docs/plot_overload.py samples.csv docs/overload-rss.png [title]
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LIMIT_MIB, SPIKE_MIB = 32, 8
PHASES = {1: ("10x overload", "#f4cccc"), 2: ("0.2x, draining", "#fff2cc"), 3: ("0.2x, no retry", "#d9ead3")}


def main(src, dst, title):
    with open(src) as f:
        rows = [r for r in csv.DictReader(f)]
    t = [float(r["t_s"]) for r in rows]
    rss = [float(r["rss_mib"]) for r in rows]
    sink = [int(r["sink_points"]) for r in rows]
    phase = [int(r["phase"]) for r in rows]
    rate = [0.0] + [
        (sink[i] - sink[i - 1]) / max(t[i] - t[i - 1], 1e-3) for i in range(1, len(t))
    ]
    # 1-second moving average of the delivery rate (10 samples).
    smooth = [sum(rate[max(0, i - 9): i + 1]) / len(rate[max(0, i - 9): i + 1]) for i in range(len(rate))]

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for p, (label, color) in PHASES.items():
        xs = [t[i] for i in range(len(t)) if phase[i] == p]
        if xs:
            for ax in (ax1, ax2):
                ax.axvspan(min(xs), max(xs), color=color, alpha=0.6, lw=0, label=label if ax is ax1 else None)
    ax1.plot(t, rss, color="#1f4e79", lw=1.2, label="oxcol RSS (sampled every 100 ms)")
    ax1.axhline(LIMIT_MIB, color="#c00000", ls="--", lw=1, label=f"limit_mib {LIMIT_MIB}")
    ax1.axhline(LIMIT_MIB - SPIKE_MIB, color="#e69138", ls=":", lw=1, label=f"soft limit {LIMIT_MIB - SPIKE_MIB} (refusing starts)")
    ax1.set_ylabel("RSS (MiB)")
    ax1.set_ylim(0, LIMIT_MIB * 1.15)
    ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title(title)
    ax2.plot(t, smooth, color="#38761d", lw=1.2, label="delivered to the sink (points/s, 1 s average)")
    ax2.set_ylabel("points/s")
    ax2.set_xlabel("seconds")
    ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "oxcol under 10x overload (memory_limiter 32 MiB)")
