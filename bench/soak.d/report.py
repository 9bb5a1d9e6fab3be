"""Reads the soak's samples.csv, fits a least-squares line to RSS, open descriptors and
webhook outbox rows over the second half of the run (after warm-up), draws soak.png, writes
summary.json, and exits 1 when a slope is above its limit.

Usage: report.py DIR   (DIR holds samples.csv; soak.png and summary.json are written there)
"""

import csv
import json
import os
import sys

# Growth per minute allowed over the second half. RSS: 1 MiB/min would be 60 MiB an hour
# from a server whose whole working set here is ~10 MiB. Descriptors: connections in flight
# make the count jitter by a few, a leak of one per churned connection would be hundreds
# a minute. Outbox rows: one row a second of sustained growth means retries fall behind.
LIMITS = {"rss_kib": 1024.0, "fds": 10.0, "outbox_rows": 60.0}
UNITS = {"rss_kib": "KiB/min", "fds": "fds/min", "outbox_rows": "rows/min"}


def slope_per_minute(ts, ys):
    """Least-squares slope of ys over ts (seconds), per minute."""
    n = len(ts)
    if n < 3:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    sxy = sum((t - mt) * (y - my) for t, y in zip(ts, ys))
    return 60.0 * sxy / sxx if sxx else 0.0


def load(path):
    with open(path) as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    for row in rows:
        row["outbox_rows"] = max(row["outbox_pending"], 0) + max(row["outbox_dead"], 0)
    return rows


def plot(rows, half, fits, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=80, sharex=True)
    panels = [
        (axes[0][0], "Resident memory (MiB)", [("rss_kib", 1 / 1024, "RSS")]),
        (axes[0][1], "Descriptors and threads", [("fds", 1, "open fds"), ("threads", 1, "threads")]),
        (axes[1][0], "Webhook outbox rows", [("outbox_pending", 1, "pending"), ("outbox_dead", 1, "dead letters")]),
        (axes[1][1], "Load", [("connections", 1, "open connections"), ("cpu_pct", 1, "herald CPU %")]),
    ]
    for ax, title, series in panels:
        for key, scale, label in series:
            ax.plot(t, [r[key] * scale for r in rows], label=label, lw=1.2)
            fit_key = "outbox_rows" if key == "outbox_pending" else key
            if fit_key in fits and key != "outbox_dead":
                a, b = fits[fit_key]["line"]
                xs = [x for x in t if x * 60 >= half]
                ax.plot(xs, [(a + b * x * 60) * scale for x in xs], "--", lw=1,
                        label=f"fit {fits[fit_key]['slope']:+.1f} {UNITS[fit_key]}")
        ax.axvline(half / 60, color="grey", lw=0.6)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    fig.suptitle("herald soak (fits over the second half, right of the grey line)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)


def main():
    out = sys.argv[1]
    rows = load(os.path.join(out, "samples.csv"))
    if len(rows) < 6:
        print(f"soak: only {len(rows)} samples; too short to judge")
        return 1
    half = rows[-1]["t_s"] / 2
    late = [r for r in rows if r["t_s"] >= half]
    fits, failed = {}, []
    for key, limit in LIMITS.items():
        ts, ys = [r["t_s"] for r in late], [r[key] for r in late]
        slope = slope_per_minute(ts, ys)
        mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
        fits[key] = {"slope": round(slope, 2), "limit": limit, "unit": UNITS[key],
                     "line": (my - slope / 60 * mt, slope / 60),
                     "peak": max(r[key] for r in rows), "last": rows[-1][key]}
        if slope > limit:
            failed.append(f"{key} grows {slope:.1f} {UNITS[key]} (limit {limit})")
    plot(rows, half, fits, os.path.join(out, "soak.png"))
    summary = {
        "samples": len(rows), "duration_s": rows[-1]["t_s"], "fit_from_s": half,
        "slopes": {k: {x: v for x, v in f.items() if x != "line"} for k, f in fits.items()},
        "peak": {k: max(r[k] for r in rows) for k in
                 ("rss_kib", "fds", "threads", "outbox_pending", "outbox_dead", "outbox_disk_kib",
                  "connections", "webhook_queue_depth", "cpu_pct")},
        "totals": {k: rows[-1][k] for k in ("connections_opened", "webhooks_delivered",
                                            "webhook_attempts_failed", "webhooks_dropped")},
        "failed": failed,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for key, fit in fits.items():
        print(f"soak: {key:12} slope {fit['slope']:+9.2f} {fit['unit']:9} (limit {fit['limit']:g}); "
              f"peak {fit['peak']:g}, last {fit['last']:g}")
    print(f"soak: peak threads {summary['peak']['threads']:g}, connections {summary['peak']['connections']:g}, "
          f"CPU {summary['peak']['cpu_pct']:g} %; webhooks delivered {summary['totals']['webhooks_delivered']:g}, "
          f"failed attempts {summary['totals']['webhook_attempts_failed']:g}, dropped {summary['totals']['webhooks_dropped']:g}")
    if failed:
        print("soak: FAIL: " + "; ".join(failed))
        return 1
    print("soak: PASS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
