#!/usr/bin/env python3
"""Combines the per-scenario JSON of one bench/run into <stamp>.json and a Markdown table."""
import json
import pathlib
import sys

SERVERS = ["herald", "sockudo", "soketi", "floor"]


def dig(obj, *path):
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, list) or key >= len(obj):
                return None
        elif not isinstance(obj, dict) or obj.get(key) is None:
            return None
        obj = obj[key]
    return obj


# (label, scenario, path into its JSON, higher_is_better, format)
ROWS = [
    ("Server RSS per idle subscribed connection (KiB)", "connections", ("result", "rss_per_connection_kib"), False, "{:.2f}"),
    ("Connections opened + subscribed per second", "connections", ("result", "connects_per_sec"), True, "{:,.0f}"),
    ("Fan-out knee: deliveries/s (p99 <= 50 ms, >= 99.9 %)", "fanout", ("knee", "deliveries_per_sec"), True, "{:,.0f}"),
    ("Fan-out knee: publishes/s", "fanout", ("knee", "publishes_per_sec"), True, "{:,.1f}"),
    ("Fan-out sustained: deliveries/s (>= 99.9 %, any latency)", "fanout", ("sustained", "deliveries_per_sec"), True, "{:,.0f}"),
    ("Fan-out sustained: p99 (ms)", "fanout", ("sustained", "latency_ms", "p99"), False, "{:.1f}"),
    ("Fan-out p50 at half the knee* (ms)", "fanout", ("half_knee", "latency_ms", "p50"), False, "{:.2f}"),
    ("Fan-out p99 at half the knee* (ms)", "fanout", ("half_knee", "latency_ms", "p99"), False, "{:.2f}"),
    ("Fan-out deliveries/s at half the knee*", "fanout", ("half_knee", "deliveries_per_sec"), True, "{:,.0f}"),
    # fanout-cost: fixed rates 5, 10, 45, 100 events/s to 2,000 subscribers (10k-200k deliveries/s).
    ("Server CPU per delivery at 10k deliveries/s (µs)", "fanout-cost", ("steps", 0, "server_cpu_us_per_delivery"), False, "{:.2f}"),
    ("Server CPU per delivery at 20k deliveries/s (µs)", "fanout-cost", ("steps", 1, "server_cpu_us_per_delivery"), False, "{:.2f}"),
    ("Server CPU per delivery at 90k deliveries/s (µs)", "fanout-cost", ("steps", 2, "server_cpu_us_per_delivery"), False, "{:.2f}"),
    ("Server CPU per delivery at 200k deliveries/s (µs)", "fanout-cost", ("steps", 3, "server_cpu_us_per_delivery"), False, "{:.2f}"),
    ("1k subscribers: fan-out knee deliveries/s (p99 <= 50 ms)", "fanout-1k", ("knee", "deliveries_per_sec"), True, "{:,.0f}"),
    ("1k subscribers: sustained deliveries/s (any latency)", "fanout-1k", ("sustained", "deliveries_per_sec"), True, "{:,.0f}"),
    ("1k subscribers: p99 at half the knee* (ms)", "fanout-1k", ("half_knee", "latency_ms", "p99"), False, "{:.2f}"),
    ("Many channels knee: deliveries/s", "channels", ("knee", "deliveries_per_sec"), True, "{:,.0f}"),
    ("Many channels sustained: deliveries/s", "channels", ("sustained", "deliveries_per_sec"), True, "{:,.0f}"),
    ("Many channels p99 at half the knee* (ms)", "channels", ("half_knee", "latency_ms", "p99"), False, "{:.2f}"),
    ("Client events round trip p50 (ms)", "client-events", ("result", "rtt_ms", "p50"), False, "{:.2f}"),
    ("Client events round trip p99 (ms)", "client-events", ("result", "rtt_ms", "p99"), False, "{:.2f}"),
    ("Client events delivered (ratio)", "client-events", ("result", "delivery_ratio"), True, "{:.4f}"),
    ("Churn: connect+subscribe+close cycles/s (32 at once, closed loop)", "churn", ("result", "cycles_per_sec"), True, "{:,.1f}"),
    ("Churn: success ratio", "churn", ("result", "success_ratio"), True, "{:.4f}"),
    ("Churn: connect p99 (ms)", "churn", ("result", "connect_ms", "p99"), False, "{:.2f}"),
    ("Churn: subscribe p99 (ms)", "churn", ("result", "subscribe_ms", "p99"), False, "{:.2f}"),
    ("HTTP triggers/s (16 keep-alive connections)", "http", ("result", "requests_per_sec"), True, "{:,.0f}"),
    ("HTTP trigger p99 (ms)", "http", ("result", "latency_ms", "p99"), False, "{:.2f}"),
]


def ratio(herald, peer, higher):
    if herald is None or peer is None or herald == 0 or peer == 0:
        return "–"
    r = herald / peer if higher else peer / herald
    word = "better" if r >= 1 else "worse"
    return f"{r:.2f}× {word}"


def saturation_notes(results):
    notes = []
    for server, scenarios in results.items():
        for name, body in scenarios.items():
            steps = [body.get("result"), body.get("knee"), body.get("half_knee")]
            for step in filter(None, steps):
                cpu = step.get("cpu") or {}
                if cpu.get("tool_saturated"):
                    notes.append(f"{server}/{name}: a herald-bench process saturated its core")
                    break
    return sorted(set(notes))


def main():
    raw, stamp, meta_path = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    meta = json.loads(meta_path.read_text())
    results = {s: {} for s in SERVERS}
    for f in sorted(raw.glob("*.json")):
        server, scenario = f.stem.split("--", 1)
        try:
            results[server][scenario] = json.loads(f.read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            results[server][scenario] = {"error": "no JSON (see .err file)"}
    out = raw.parent
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))

    present = [s for s in SERVERS if s not in meta.get("skipped", {})]
    lines = [f"# herald-bench results {stamp}", ""]
    lines += [f"- Machine: {meta['machine']}", f"- Load before each server: "]
    lines += [f"  - {s}: {meta['load'].get(s, 'n/a')}" for s in SERVERS]
    lines += [f"- Versions: {meta['versions']}", ""]
    for s, why in meta.get("skipped", {}).items():
        lines.append(f"- **{s} skipped**: {why}")
    lines += ["", "| Metric | Herald | Sockudo | Soketi | Herald vs Sockudo | Herald vs Soketi | Floor (one write per socket) |",
              "|---|---|---|---|---|---|---|"]
    for label, scenario, path, higher, fmt in ROWS:
        vals = {s: dig(results[s].get(scenario, {}), *path) for s in SERVERS}
        cells = []
        for s in SERVERS[:3]:
            v = vals[s]
            if s not in present:
                cells.append("skipped")
            elif v is None:
                cells.append("n/a")
            else:
                cells.append(fmt.format(v))
        floor = vals["floor"]
        floor_cell = "–" if floor is None or not scenario.startswith("fanout") else fmt.format(floor)
        lines.append(f"| {label} | {' | '.join(cells)} | {ratio(vals['herald'], vals['sockudo'], higher)}"
                     f" | {ratio(vals['herald'], vals['soketi'], higher)} | {floor_cell} |")
    notes = saturation_notes(results)
    lines += ["", "Ratios: \"better\" means Herald is ahead (higher throughput or lower latency/memory).",
              "Floor: `herald-bench floor`, a minimal loop writing one pre-encoded frame to every socket "
              "per trigger (no channels, no queues): the cost of one write per socket per event on this machine; "
              "a server that coalesces queued frames into one write per socket can exceed its throughput.",
              "*Half the knee, or half the sustained rate when no step kept p99 under the bound: "
              + ", ".join(f"{s}: {results[s].get('fanout', {}).get('half_of', 'n/a')}" for s in SERVERS) + "."]
    if notes:
        lines += ["", "Tool saturation (figures are a floor for the server):"] + [f"- {n}" for n in notes]
    lines += ["", "## Ramp steps", ""]
    for scenario in ("fanout", "fanout-cost", "fanout-1k", "channels"):
        for s in present:
            steps = results[s].get(scenario, {}).get("steps") or []
            if not steps:
                continue
            lines.append(f"**{s} {scenario}**: " + "; ".join(
                f"{st['rate']:.0f}/s → {st['deliveries_per_sec']:,.0f} del/s, p99 {st['latency_ms']['p99']:.1f} ms, "
                f"{st['delivery_ratio']:.4f}, server {st.get('server_cpu_us_per_delivery')} µs/delivery{'' if st['pass'] else ' ✗ ' + (st.get('fail_reason') or '')}"
                for st in steps))
            lines.append("")
    lines += ["## Commands", "", "```"] + meta["commands"] + ["```", ""]
    (out / f"{stamp}.md").write_text("\n".join(lines))
    print(out / f"{stamp}.md")


if __name__ == "__main__":
    main()
