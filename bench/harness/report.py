"""The machine, the commit, and the results as a console table, latest.json and latest.md."""
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from .servers import ROOT

TITLES = {"micro": "Micro-benchmarks (Google Benchmark)", "drain": "1. Drain",
          "cluster-drain": "7. Drain into a 2 x 2 ClickHouse cluster, beside one server",
          "baseline": "5. Baseline (Celery-style)",
          "sustained": "2. Sustained, and drains with a snapshot held", "freshness": "3. Freshness",
          "producer": "4. Producer cost", "http": "6. HTTP"}


def machine() -> dict:
    info = {"cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


def commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, text=True, capture_output=True).stdout.strip()
    return {"sha": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def server_info(runner) -> dict:
    out = {"own_stack": runner.servers.own_stack}
    try:
        conn = runner.servers.pg()
        with conn.cursor() as cur:
            for key in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections"):
                cur.execute(f"SHOW {key}")
                out[f"postgresql_{key}"] = cur.fetchone()[0]
        conn.close()
    except Exception as e:  # noqa: BLE001
        out["postgresql_error"] = str(e)
    try:
        out["clickhouse_version"] = runner.ch.scalar("SELECT version()")
    except Exception as e:  # noqa: BLE001
        out["clickhouse_error"] = str(e)
    out["cpu_accounting"] = {"postgresql_postmaster_pid_found": runner.cpu.postmaster is not None,
                             "clickhouse_pid_found": runner.cpu.clickhouse is not None}
    return out


def console_table(results: dict) -> str:
    lines = []
    widths = (62, 44, 22)
    for key, res in results["scenarios"].items():
        lines.append("")
        lines.append(f"== {TITLES.get(key, key)}" + (f"  [FAILED: {res['error']}]" if res.get("error") else ""))
        for row in res.get("rows", []):
            lines.append(f"  {row['metric']:<{widths[0]}} {row['value']:<{widths[1]}} "
                         f"{('target ' + row['target']) if row['target'] else '':<{widths[2]}} {row['note']}")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    m, s, c = results["machine"], results["servers"], results["commit"]
    md = [f"# eventlog bench — {results['started_at']}", "",
          f"Command: `{results['command']}` ({results['mode']} run, {results['duration_s'] / 60:.1f} min).", "",
          f"Commit `{c['sha'][:12]}` on `{c['branch']}`{' (working tree dirty)' if c['dirty'] else ''}. "
          f"Machine: {m.get('cores')} cores ({m.get('cpu_model', '?')}), {m.get('memory_gib', '?')} GiB, "
          f"Linux {m.get('kernel')}; load average {results['loadavg_start']} at start, {results['loadavg_end']} at end. "
          f"PostgreSQL {s.get('postgresql_server_version', '?')} (fsync {s.get('postgresql_fsync', '?')}, "
          f"shared_buffers {s.get('postgresql_shared_buffers', '?')}), ClickHouse {s.get('clickhouse_version', '?')}, "
          f"{'throwaway servers started by the bench' if s.get('own_stack') else 'configured servers'}; "
          "all on the same machine as the load generators.", "",
          "Figures are medians with (min–max, n=runs). The machine is shared and noisy: compare figures only with "
          "those of the same run.", ""]
    for key, res in results["scenarios"].items():
        md.append(f"## {TITLES.get(key, key)}")
        md.append("")
        if res.get("error"):
            md.append(f"**Failed:** {res['error']}")
            md.append("")
        if res.get("rows"):
            md.append("| what | figure | target | note |")
            md.append("|---|---|---|---|")
            for row in res["rows"]:
                md.append(f"| {row['metric']} | {row['value']} | {row['target']} | {row['note']} |")
            md.append("")
    md.append("Details (every run, CPU per component, relay profiles): `latest.json`. How each figure is measured: "
              "docs/benchmarks.md.")
    return "\n".join(md) + "\n"


def write(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / "latest.md").write_text(markdown(results))


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def median_range_line(name: str, values: list, unit: str, spec: str = ",.0f", note: str = "") -> str:
    """One console line for a standalone comparison script: `name  median unit median, range min-max (n=N, note)`."""
    v = sorted(values)
    median = statistics.median(v)
    extra = f", {note}" if note else ""
    return (f"{name:42s} {median:>10{spec}} {unit} median, range {v[0]:{spec}}-{v[-1]:{spec}} "
            f"(n={len(v)}{extra})")
