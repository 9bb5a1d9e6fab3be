"""Samples a running herald every --interval seconds into a CSV: resident memory, open
descriptors, OS threads, CPU, webhook outbox rows (read-only SQLite), and a few /metrics
values. Tokio tasks are not visible from outside the process, so they are not sampled.

Usage: sample.py --pid PID --port PORT --data-dir DIR --csv FILE --seconds N [--interval 10]
"""

import argparse
import csv
import os
import sqlite3
import time
import urllib.request

COLUMNS = ["t_s", "rss_kib", "fds", "threads", "cpu_pct", "outbox_pending", "outbox_dead",
           "outbox_disk_kib", "connections", "webhook_queue_depth", "webhooks_delivered",
           "webhook_attempts_failed", "webhooks_dropped", "connections_opened"]
TICK = os.sysconf("SC_CLK_TCK")


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK  # utime, stime


def outbox(data_dir):
    """(pending, dead, KiB on disk); (-1, -1, 0) before the database exists."""
    path = os.path.join(data_dir, "webhooks.sqlite3")
    disk = sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm")
               if os.path.exists(p)) // 1024
    if not os.path.exists(path):
        return -1, -1, disk
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = dict(db.execute("SELECT dead, count(*) FROM webhook_events GROUP BY dead"))
    finally:
        db.close()
    return rows.get(0, 0), rows.get(1, 0), disk


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        base = name.split("{", 1)[0]
        values[base] = values.get(base, 0) + float(value)
    return values


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--interval", type=float, default=10)
    args = parser.parse_args()
    start = time.monotonic()
    last_cpu, last_t = cpu_seconds(args.pid), start
    with open(args.csv, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        n = -1
        while True:
            n += 1  # sample 0 is taken at once: the server before (most of) the load
            due = start + n * args.interval
            if due > start + args.seconds + 0.5:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                st = status(args.pid)
                fds = len(os.listdir(f"/proc/{args.pid}/fd"))
                cpu, now = cpu_seconds(args.pid), time.monotonic()
                m = metrics(args.port)
            except (OSError, ValueError) as e:
                print(f"sample: herald is gone or not answering ({e}); stopping", flush=True)
                return 1
            pending, dead, disk = outbox(args.data_dir)
            cpu_pct = 100.0 * (cpu - last_cpu) / max(now - last_t, 1e-9)
            last_cpu, last_t = cpu, now
            writer.writerow([
                round(now - start, 1), int(st["VmRSS"].split()[0]), fds, int(st["Threads"]),
                round(cpu_pct, 1), pending, dead, disk,
                int(m.get("herald_connections", 0)),
                int(m.get("herald_webhook_queue_depth", 0)),
                int(m.get("herald_webhooks_delivered_total", 0)),
                int(m.get("herald_webhook_attempts_failed_total", 0)),
                int(m.get("herald_webhooks_dropped_total", 0)),
                int(m.get("herald_connections_opened_total", 0)),
            ])
            out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
