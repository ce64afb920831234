"""The bench's figures as one table: value, the bare responder's figure where one compares,
the ratio, and the target of the performance issue."""
from __future__ import annotations

from typing import Any

from .routing import ISOLATED_RATE


def render(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name: str, value: float | None, unit: str, base: float | None = None, target: str = "",
            ok: bool | None = None) -> None:
        text = "-" if value is None else (f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}")
        ratio = f"{value / base:.2f}x" if value is not None and base else ""
        verdict = "" if ok is None else (" ok" if ok else " MISSED")
        rows.append((name, f"{text} {unit}", f"{base:,.0f}" if base else "", ratio, f"{target}{verdict}"))

    crm = results["crm"]
    for size, figures in crm["lookup"].items():
        big = int(size) >= 1_000_000
        row(f"lookup p50, {int(size):,} contacts", figures["p50"], "µs")
        row(f"lookup p99, {int(size):,} contacts", figures["p99"], "µs", target="≤ 1,000" if big else "",
            ok=figures["p99"] <= 1000 if big else None)
    imported = crm["import_s"]
    big = imported["contacts"] >= 1_000_000
    row(f"crm import, {imported['contacts']:,} contacts{' (cached)' if imported['cached'] else ''}",
        imported["seconds"], "s", target="≤ 60" if big else "", ok=imported["seconds"] <= 60 if big else None)

    routing = results["routing"]
    bare, pano, daemon = routing["bare"], routing["panoramisk"], routing["daemon"]
    base = bare["cpu_us"]
    row("CPU/session, bare asyncio responder", base, "µs", base)
    row("CPU/session, panoramisk fast_agi", pano["cpu_us"], "µs", base)
    ratios = routing.get("ratios")
    judged = ratios is None  # results written before the interleaved rounds: the ratios below judge
    row("CPU/session, agi-daemon known caller", daemon["cpu_us"], "µs", base, "≤ 3x" if judged else "",
        daemon["cpu_us"] <= 3 * base if judged else None)
    row("CPU/session, agi-daemon new caller", daemon["new_caller_cpu_us"], "µs", base, "≤ 5x" if judged else "",
        daemon["new_caller_cpu_us"] <= 5 * base if judged else None)
    if ratios is not None:
        rounds = len(ratios["rounds"])
        for kind, limit in (("known", 3), ("new", 5)):
            low, high = ratios[f"{kind}_ratio_range"]
            median = ratios[f"{kind}_ratio"]
            rows.append((f"  {kind} caller / bare, median of {rounds} interleaved rounds ({low:.2f}–{high:.2f})",
                         "", "", f"{median:.2f}x", f"≤ {limit}x " + ("ok" if median <= limit else "MISSED")))
    if "new_caller_split_us" in daemon:
        split = daemon["new_caller_split_us"]
        row("  new caller: on the event loop", split["event_loop_us"], "µs")
        row("  new caller: in other threads (the CRM writer)", split["other_threads_us"], "µs")
    row("CPU/session, agi-daemon hangup report", daemon["hangup_report_cpu_us"], "µs", base)
    if "hangup_report_split_us" in daemon:
        split = daemon["hangup_report_split_us"]
        row("  hangup report: on the event loop", split["event_loop_us"], "µs")
        row("  hangup report: in other threads (the CRM writer)", split["other_threads_us"], "µs")
    if "one_at_a_time_cpu_us" in daemon:
        alone = bare["one_at_a_time_cpu_us"]
        row(f"CPU/session, one at a time ({ISOLATED_RATE:g}/s): bare", alone, "µs", alone)
        row("  panoramisk", pano["one_at_a_time_cpu_us"], "µs", alone)
        row("  agi-daemon known caller", daemon["one_at_a_time_cpu_us"], "µs", alone)
    row("calls routed without their lookup (over crm_deadline_ms)", daemon["late_lookups"], "calls", target="0",
        ok=daemon["late_lookups"] == 0)
    for level in bare["levels"]:
        b, p, d = bare["levels"][level], pano["levels"][level], daemon["levels"][level]
        row(f"decisions/s, {level} concurrent: bare", b["decisions_per_s"], "/s", b["decisions_per_s"])
        row("  panoramisk", p["decisions_per_s"], "/s", b["decisions_per_s"])
        row("  agi-daemon (known callers)", d["decisions_per_s"], "/s", b["decisions_per_s"])
        for name, figures in (("bare", b), ("panoramisk", p), ("agi-daemon", d)):
            rows.append((f"  latency p50/p95/p99, {name}",
                         "/".join(f"{figures[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")) + " ms", "", "", ""))
    for name, server in (("bare", bare), ("panoramisk", pano), ("agi-daemon", daemon)):
        o = server["open_loop"]
        target = name == "agi-daemon"
        row(f"p99 latency, {o['concurrent']} in progress + {o['rate_per_s']:.0f} calls/s: {name}", o["p99_ms"], "ms",
            bare["open_loop"]["p99_ms"], "≤ 10" if target else "", o["p99_ms"] <= 10 if target else None)
    row("RSS/idle session, bare", bare["idle_rss_kib"], "KiB")
    row("RSS/idle session, panoramisk", pano["idle_rss_kib"], "KiB")
    row("RSS/idle session, agi-daemon", daemon["idle_rss_kib"], "KiB", None, "≤ 30", daemon["idle_rss_kib"] <= 30)

    for name, value in results["tracking"].items():
        row(name, value, "")
    real = results["real_calls"]
    if "skipped" in real:
        rows.append(("real calls", f"skipped: {real['skipped']}", "", "", ""))
    else:
        row(f"real call ({real['calls']} calls, held {real['hold_s']:g} s), Asterisk", real["asterisk_ms_per_call"], "ms CPU")
        row("real call, agi-daemon (routing + report + tracking)", real["daemon_ms_per_call"], "ms CPU",
            real["asterisk_ms_per_call"], "≤ 0.15x",
            real["daemon_share"] is not None and real["daemon_share"] <= 0.15)
        if "event_loop_ms_per_call" in real:
            row("  of which on the event loop", real["event_loop_ms_per_call"], "ms CPU")
            row("  of which in other threads (CRM writer, log writer)", real["other_threads_ms_per_call"], "ms CPU")
            row("  of which idle (timers, pings) over the run", real["idle_ms_per_call"], "ms CPU")
            row("  daemon idle, AMI logged in, no call", real["daemon_idle_ms_per_s"], "ms CPU/s")
            row("  daemon context switches (wakeups) per call", real["context_switches_per_call"], "")
            row("real call, bare responder as the FastAGI server (2 sessions)", real["bare_ms_per_call"], "ms CPU",
                real["asterisk_ms_per_call"])

    for name, value in (results.get("ari") or {}).items():  # the two modes, measured side by side
        row(name, value, "")

    drain = results.get("bitrix24_drain")
    if drain:
        row(f"Bitrix24 drain, {drain['writes']:,} queued writes, 2/s burst 50", drain["writes_per_second"], "writes/s",
            target="≥ 90", ok=drain["writes_per_second"] >= 90)
        row("  QUERY_LIMIT_EXCEEDED answers", drain["query_limit_exceeded"], "", target="0",
            ok=drain["query_limit_exceeded"] == 0)

    width = [max(len(r[i]) for r in rows) for i in range(5)]
    head = ("figure", "value", "bare", "ratio", "target")
    width = [max(w, len(h)) for w, h in zip(width, head, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, width, strict=True))]
    lines += ["  ".join((r[0].ljust(width[0]), r[1].rjust(width[1]), r[2].rjust(width[2]), r[3].rjust(width[3]), r[4]))
              for r in rows]
    machine = results["machine"]
    lines.append(f"machine: {machine['nproc']} x {machine['cpu']}, Python {machine['python']}, "
                 f"load {', '.join(f'{x:.2f}' for x in machine['load_average'])} at the start"
                 + (f", {', '.join(f'{x:.2f}' for x in machine['load_average_at_end'])} at the end"
                    if "load_average_at_end" in machine else "")
                 + f"; {'quick run' if results['quick'] else 'full run'}")
    return "\n".join(lines)
