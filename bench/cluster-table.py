#!/usr/bin/env python3
"""Combines the raw JSON of one bench/cluster run into <name>.json and <name>.md tables.

Usage: cluster-table.py RAW_DIR NAME META_JSON   (writes next to RAW_DIR)
Every figure printed comes from a herald-bench report in RAW_DIR; nothing is estimated."""
import json
import pathlib
import statistics
import sys

CONFIGS = [("herald", "local"), ("herald", "redis"), ("herald", "nats"),
           ("sockudo", "local"), ("sockudo", "redis"), ("sockudo", "nats")]
LABEL = {"local": "one node", "redis": "3 nodes, Redis", "nats": "3 nodes, NATS"}


def dig(obj, *path):
    for key in path:
        if isinstance(obj, list):
            obj = obj[key] if isinstance(key, int) and key < len(obj) else None
        elif isinstance(obj, dict):
            obj = obj.get(key)
        else:
            return None
        if obj is None:
            return None
    return obj


def fmt(x, spec="{:.2f}"):
    return "–" if x is None else spec.format(x)


def kib(x):
    return "–" if x is None else f"{x / 1024:.1f}"


def load(raw):
    runs = []
    for path in sorted(raw.glob("*.json")):
        try:
            body = json.loads(path.read_text())
        except ValueError:
            continue  # a run still writing, or one that died before its JSON
        if "run" in body:
            runs.append(body)
    return runs


def fixed_rows(runs, scenario):
    """{(server, driver): {rate: [step, ...] over rounds}} of one fixed-rate scenario; the
    hop scenario's one-node rows are the same runs as fanout-fixed's when both ran."""
    out = {}
    for r in runs:
        same = r["run"]["scenario"] == scenario
        one_node = scenario == "fanout-hop" and r["run"]["driver"] == "local"
        if not same and not (one_node and r["run"]["scenario"] == "fanout-fixed"):
            continue
        key = (r["run"]["server"], r["run"]["driver"])
        for s in r.get("steps") or []:
            out.setdefault(key, {}).setdefault(s["rate"], []).append(s)
    return out


def med(steps, *path):
    vals = [v for v in (dig(s, *path) for s in steps) if v is not None]
    return statistics.median(vals) if vals else None


def spread(steps, *path):
    vals = [v for v in (dig(s, *path) for s in steps) if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.median(vals):.2f} ({min(vals):.2f}–{max(vals):.2f})"


def broker_per_node(steps):
    """Median over rounds of the mean broker bytes/s (out+in) per node."""
    vals = []
    for s in steps:
        nodes = dig(s, "cpu", "nodes") or []
        per = [(n.get("broker_out_bytes_per_sec") or 0) + (n.get("broker_in_bytes_per_sec") or 0)
               for n in nodes if n.get("broker_out_bytes_per_sec") is not None]
        if per:
            vals.append(sum(per) / len(per))
    return statistics.median(vals) if vals else None


def fixed_table(fixed):
    lines = ["| Server | Setup | Events/s | Deliveries/s | Delivered | p50 (ms) | p99 (ms) | Added p50 (ms) | Added p99 (ms) | Server CPU, all nodes (cores) | Broker traffic per node (KiB/s, out+in) | Rounds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for server, driver in CONFIGS:
        rates = fixed.get((server, driver))
        if not rates:
            continue
        base = fixed.get((server, "local"), {})
        for rate in sorted(rates):
            steps = rates[rate]
            p50, p99 = med(steps, "latency_ms", "p50"), med(steps, "latency_ms", "p99")
            b50 = med(base.get(rate, []), "latency_ms", "p50")
            b99 = med(base.get(rate, []), "latency_ms", "p99")
            add50 = None if driver == "local" or p50 is None or b50 is None else p50 - b50
            add99 = None if driver == "local" or p99 is None or b99 is None else p99 - b99
            lines.append(
                f"| {server} | {LABEL[driver]} | {rate:g} | {fmt(med(steps, 'deliveries_per_sec'), '{:,.0f}')} "
                f"| {fmt(min(s['delivery_ratio'] for s in steps), '{:.4f}')} "
                f"| {spread(steps, 'latency_ms', 'p50')} | {spread(steps, 'latency_ms', 'p99')} "
                f"| {fmt(add50, '{:+.2f}')} | {fmt(add99, '{:+.2f}')} "
                f"| {fmt(med(steps, 'cpu', 'server_cores'))} | {kib(broker_per_node(steps))} | {len(steps)} |")
    return lines


def ramp_table(runs):
    lines = ["| Server | Setup | Knee deliveries/s (p99 <= 50 ms) | p99 at knee (ms) | Sustained deliveries/s (any latency) | p99 sustained (ms) | p50 / p99 at half the knee (ms) | Last step's verdict |",
             "|---|---|---|---|---|---|---|---|"]
    by = {(r["run"]["server"], r["run"]["driver"]): r for r in runs if r["run"]["scenario"] == "fanout-ramp"}
    for key in CONFIGS:
        r = by.get(key)
        if not r:
            continue
        last = (r.get("steps") or [{}])[-1]
        half = r.get("half_knee")
        lines.append(
            f"| {key[0]} | {LABEL[key[1]]} | {fmt(dig(r, 'knee', 'deliveries_per_sec'), '{:,.0f}')} "
            f"| {fmt(dig(r, 'knee', 'latency_ms', 'p99'))} "
            f"| {fmt(dig(r, 'sustained', 'deliveries_per_sec'), '{:,.0f}')} "
            f"| {fmt(dig(r, 'sustained', 'latency_ms', 'p99'))} "
            f"| {fmt(dig(half, 'latency_ms', 'p50'))} / {fmt(dig(half, 'latency_ms', 'p99'))} "
            f"| {last.get('fail_reason') or r.get('error') or 'held'} |")
    return lines


def presence_tables(runs):
    lines = []
    for r in runs:
        if r["run"]["scenario"] != "presence":
            continue
        run = r["run"]
        lines += [f"#### {run['server']}, {LABEL[run['driver']]}", ""]
        if "error" in r:
            lines += [f"Failed: {r['error']}", ""]
            continue
        c = r.get("connect", {})
        lines.append(f"{c.get('connected')} members joined ({c.get('failed')} failed) in {c.get('seconds')} s "
                     f"({fmt(c.get('joins_per_sec'), '{:,.0f}')} joins/s); load before: {run['load_before']}.")
        lines += ["", "| Phase | Node | CPU (% of a core) | To broker (KiB/s) | From broker (KiB/s) | Broker process CPU (% of a core) | Member events received (all members) |",
                  "|---|---|---|---|---|---|---|"]
        for phase in ("rest", "churn"):
            p = r.get(phase)
            if not p:
                continue
            label = phase
            if phase == "churn":
                ch = p.get("churn", {})
                label = f"churn ({fmt(ch.get('joins_per_sec'), '{:.0f}')} joins/s + as many leaves, {ch.get('failed')} failed)"
            for i, n in enumerate(p.get("nodes", [])):
                lines.append(f"| {label} | {i + 1} | {fmt(n['cores'] * 100 if n.get('cores') is not None else None, '{:.1f}')} "
                             f"| {kib(n.get('broker_out_bytes_per_sec'))} | {kib(n.get('broker_in_bytes_per_sec'))} "
                             f"| {fmt((p.get('broker_cores') or 0) * 100, '{:.1f}') if i == 0 else ''} "
                             f"| {str(p.get('member_added')) + ' added, ' + str(p.get('member_removed')) + ' removed' if i == 0 else ''} |")
        k = r.get("kill")
        if k:
            lines += ["", "| SIGKILL node 3: member_removed expected | seen | first (s) | median (s) | last (s) | within Herald's bound (node_timeout 10 s + 5 s) |",
                      "|---|---|---|---|---|---|",
                      f"| {k['expected']:,} | {k['observed']:,} | {k['first_ms'] / 1000:.2f} | {k['p50_ms'] / 1000:.2f} "
                      f"| {k['last_ms'] / 1000:.2f} | {'yes' if k['within_bound'] else 'NO'} ({k['bound_ms'] / 1000:.0f} s) |"]
        lines.append("")
    return lines


def main():
    raw, name, meta_path = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    meta = json.loads(pathlib.Path(meta_path).read_text())
    runs = load(raw)
    loads = [f"{r['run']['name']}: {r['run']['load_before']}" for r in runs]
    md = [f"# Cluster benchmark {name}", "",
          f"Machine: {meta['machine']}. Server nodes, brokers and the load generator share these cores.", "",
          f"Versions: {meta['versions']}.", "",
          f"Invocation: `{meta['invocation']}`", "",
          "## Fan-out at fixed rates (publish on node 1; 2,000 subscribers on nodes 2 and 3; 100 B)", "",
          "p50/p99: median over rounds (range). Added: minus the same server on one node at the same rate (medians).", ""]
    md += fixed_table(fixed_rows(runs, "fanout-fixed"))
    hop = fixed_rows(runs, "fanout-hop")
    if any(driver != "local" for _, driver in hop):
        md += ["", "## Fan-out through one broker hop (publish on node 1; all 2,000 subscribers on node 2; 100 B)", "",
               "As above, but one node sweeps every socket, as the single node does: the added latency is the hop.", ""]
        md += fixed_table(hop)
    md += ["", "## Fan-out ramp to the knee", ""] + ramp_table(runs)
    md += ["", "## Presence at scale", ""] + presence_tables(runs)
    md += ["## Load average (1/5/15 min) before each run", ""] + [f"- {l}" for l in loads]
    md += ["", "## Commands", "", "```sh"] + meta["commands"] + ["```", ""]
    out = raw.parent
    (out / f"{name}.md").write_text("\n".join(md))
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    print("\n".join(md))
    print(f"wrote {out / (name + '.md')} and {out / (name + '.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
