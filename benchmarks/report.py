"""Turning the runs of a benchmark into figures: medians, ratios, goals, a table, JSON, a chart."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.workloads import MIB, Run

PIPELINE = "pipeline"
CEILING = "curl -o /dev/null"
#: The tools of the startup-embedded workload: the CLI with no PREFECT_API_URL, on a
#: PREFECT_HOME it has used before, and on an empty one (where it creates the database).
EMBEDDED_LATER = "embedded, later run"
EMBEDDED_FIRST = "embedded, first run"
#: The comparisons the issues ask for, as (workload, baseline).
GOAL_THRESHOLDS = {
    "large_vs_curl_speed": 0.9,  # at least 0.9x the throughput of curl | tee | md5sum
    "large_vs_aria2_speed": 1.0,  # faster than aria2c with its checksum
    "small_vs_aria2_wall": 2.5,  # at most 2.5x aria2c's wall time
    "small_api_cpu_ms": 4.0,  # Prefect server CPU per file
    "small_cli_cpu_ms": 2.5,  # the CLI's CPU per file
    "medium_vs_curl_wall": 1.5,  # at most 1.5x four curl | tee | md5sum at once
    "embedded_vs_running_wall": 2.0,  # a one-file order without PREFECT_API_URL
    "peak_rss_mb": 300.0,
    "rss_growth_mb": 20.0,
    "ceiling_over_pipeline": 3.0,  # the server is not the bottleneck
}


def _command_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """What the figures ran on (the shape of `nproc`, `lscpu | head`, `free -h`)."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "nproc": _command_line(["nproc"]),
        "lscpu": _command_line(["lscpu"]).splitlines()[:10],
        "free": _command_line(["free", "-h"]).splitlines(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prefect": version("prefect"),
        "httpx": version("httpx"),
        "s3fs": version("s3fs"),
        "moto": version("moto"),
        "curl": (_command_line(["curl", "--version"]).splitlines() or [""])[0],
        "aria2c": (_command_line(["aria2c", "--version"]).splitlines() or [""])[0],
    }


def code_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the pipeline's files that differ from it."""
    repo = Path(__file__).resolve().parent.parent
    commit = _command_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    try:
        changed = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "status",
                "--porcelain",
                "--",
                "flows",
                "tasks",
                "regards_order",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        changed = ""
    # Porcelain lines are "XY path": the status letters, a space, the path.
    return {"commit": commit, "uncommitted": [line[3:] for line in changed.splitlines()]}


def _summary(runs: list[Run], total_bytes: int, files: int) -> dict[str, Any]:
    ok = [r for r in runs if r.ok]
    if not ok:
        return {"runs": len(runs), "runs_ok": 0}
    wall = statistics.median(r.wall_s for r in ok)
    summary: dict[str, Any] = {
        "runs": len(runs),
        "runs_ok": len(ok),
        "wall_s": wall,
        "wall_min_s": min(r.wall_s for r in ok),
        "wall_max_s": max(r.wall_s for r in ok),
        "cpu_s": statistics.median(r.cpu_s for r in ok),
        "peak_rss_mb": max(r.max_rss_mb for r in ok),
        "mib_s": total_bytes / MIB / wall,
        "files_s": files / wall,
    }
    for key in ("api_cpu_s", "simulator_cpu_s", "other_cpu_s"):
        values = [getattr(r, key) for r in ok if getattr(r, key) is not None]
        if values:
            summary[key] = statistics.median(values)
    inner = [r.inner_s for r in ok if r.inner_s is not None]
    if inner:
        summary["inner_s"] = statistics.median(inner)
    tree_rss = [r.tree_rss_mb for r in ok if r.tree_rss_mb is not None]
    if tree_rss:
        summary["peak_tree_rss_mb"] = max(tree_rss)
    counted = [r.task_runs for r in runs if r.task_runs is not None]
    if counted:
        # Over every run, failed ones included: a short count is what fails a run.
        summary["task_runs"] = {
            key: sum(int(c[key]) for c in counted) for key in ("completed", "expected")
        }
    return summary


def _workload(raw: dict[str, Any], startup: dict[str, Any] | None) -> dict[str, Any]:
    spec, runs = raw["spec"], raw["runs"]
    tools = sorted({r.tool for r in runs}, key=lambda t: (t != PIPELINE, t))
    summaries = {
        tool: _summary([r for r in runs if r.tool == tool], spec["total_bytes"], spec["files"])
        for tool in tools
    }
    result: dict[str, Any] = {
        "spec": spec,
        "tools": summaries,
        "runs": [r.as_json() for r in runs],
    }
    pipe = summaries.get(PIPELINE, {})
    if startup and "wall_s" in pipe and "wall_s" in startup:
        net = pipe["wall_s"] - startup["wall_s"]
        pipe["net_of_startup_wall_s"] = net
        if net > 0:
            pipe["net_of_startup_mib_s"] = spec["total_bytes"] / MIB / net
    ratios = {}
    for tool, summary in summaries.items():
        if tool == PIPELINE or "wall_s" not in summary or "wall_s" not in pipe:
            continue
        ratios[tool] = {
            # > 1: the pipeline takes longer than the tool.
            "wall": pipe["wall_s"] / summary["wall_s"],
            # < 1: the pipeline moves bytes slower than the tool.
            "speed": summary["wall_s"] / pipe["wall_s"],
        }
    if ratios:
        result["ratios"] = ratios
    return result


def build(measured: dict[str, Any], args: argparse.Namespace, *, elapsed: float) -> dict[str, Any]:
    """Every figure of the benchmark as one JSON-ready document."""
    workloads: dict[str, Any] = {}
    startup = None
    if "startup" in measured:
        workloads["startup"] = _workload(measured["startup"], None)
        startup = workloads["startup"]["tools"].get(PIPELINE)
    if "startup-embedded" in measured:
        embedded = workloads["startup-embedded"] = _workload(measured["startup-embedded"], None)
        if startup and "wall_s" in startup:
            embedded["vs_running_server"] = {
                # > 1: without an API URL the same order takes longer.
                tool: {"wall": summary["wall_s"] / startup["wall_s"]}
                for tool, summary in embedded["tools"].items()
                if "wall_s" in summary
            }
    for name in ("large", "small", "medium", "s3", "dask"):
        if name in measured:
            workloads[name] = _workload(measured[name], startup)
    if "memory" in measured:
        memory = {key: _workload(raw, None) for key, raw in measured["memory"].items()}
        small = memory["small"]["tools"][PIPELINE].get("peak_rss_mb")
        large = memory["large"]["tools"][PIPELINE].get("peak_rss_mb")
        if small is not None and large is not None:
            memory["rss_difference_mb"] = large - small
        workloads["memory"] = memory
    small_workload = workloads.get("small")
    if small_workload and startup:
        _per_file(small_workload, startup)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": elapsed,
        "machine": machine(),
        "settings": settings,
        "how": (
            "pipeline = `regards-order download` CLI in its own process against one "
            "`prefect server start` for the whole benchmark (PREFECT_API_URL set; its task-run "
            "recorder batched, benchmarks.procs.PREFECT_SERVER_SETTINGS), a pipeline run "
            "counting only if the server then holds every task run of it Completed; "
            "startup-embedded = the same CLI without PREFECT_API_URL, starting Prefect's "
            "temporary server itself (its CPU counted with the CLI's); wall, CPU "
            "(user+system) and peak RSS of the largest process from GNU time (wait4); "
            "medians over repetitions; tools alternate within each repetition; fresh "
            "simulator and folder per run"
        ),
        "workloads": workloads,
    }
    results["code"] = code_state()
    results["goals"] = goals(workloads)
    return results


def _per_file(small: dict[str, Any], startup: dict[str, Any]) -> None:
    pipe, aria = small["tools"].get(PIPELINE, {}), small["tools"].get("aria2c", {})
    files = small["spec"]["files"]
    if "wall_s" not in pipe or not files:
        return
    per_file: dict[str, float] = {
        # The pipeline's CPU for each file beyond its fixed start-up.
        "pipeline_cpu_ms": 1000 * (pipe["cpu_s"] - startup["cpu_s"]) / files,
    }
    if "api_cpu_s" in pipe and "api_cpu_s" in startup:
        per_file["prefect_api_cpu_ms"] = 1000 * (pipe["api_cpu_s"] - startup["api_cpu_s"]) / files
    if "wall_s" in aria:
        # Wall time per file beyond aria2c's, once the CLI's fixed start-up is taken off.
        extra = pipe["wall_s"] - startup["wall_s"] - aria["wall_s"]
        per_file["overhead_ms"] = 1000 * extra / files
    small["per_file"] = per_file


_COMPARE = {
    ">=": lambda value, target: value >= target,
    ">": lambda value, target: value > target,
    "<=": lambda value, target: value <= target,
    "<": lambda value, target: value < target,
}


def _goal(name: str, text: str, value: float | None, op: str, target: float) -> dict[str, Any]:
    met = None if value is None else bool(_COMPARE[op](value, target))
    return {"goal": name, "text": text, "value": value, "op": op, "target": target, "met": met}


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def goals(workloads: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, each with its measured value and whether it is met."""
    t = GOAL_THRESHOLDS
    large = workloads.get("large", {})
    pipeline_peaks: list[float] = [
        summary["peak_rss_mb"]
        for workload in workloads.values()
        for summary in _pipeline_summaries(workload)
        if "peak_rss_mb" in summary
    ]
    ceiling = _get(large, "tools", "curl -o /dev/null", "wall_s")
    curl_wall = _get(large, "tools", "curl|tee|md5sum", "wall_s")
    pipe_net = _get(large, "tools", PIPELINE, "net_of_startup_wall_s")
    pipe_wall = _get(large, "tools", PIPELINE, "wall_s")
    return [
        *_pipeline_goals(workloads),
        _goal(
            "large_vs_curl_speed",
            "large file: pipeline throughput / curl|tee|md5sum throughput >= 0.9",
            _get(large, "ratios", "curl|tee|md5sum", "speed"),
            ">=",
            t["large_vs_curl_speed"],
        ),
        _goal(
            "large_vs_curl_speed_net",
            "(informative) the same, net of the CLI's fixed start-up: the transfer path alone",
            curl_wall / pipe_net if curl_wall and pipe_net and pipe_net > 0 else None,
            ">=",
            t["large_vs_curl_speed"],
        ),
        _goal(
            "large_vs_aria2_speed",
            "large file: faster than aria2c with its checksum (speed ratio > 1)",
            _get(large, "ratios", "aria2c", "speed"),
            ">",
            t["large_vs_aria2_speed"],
        ),
        _goal(
            "peak_rss_mb",
            "pipeline peak RSS (all workloads) < 300 MB",
            max(pipeline_peaks) if pipeline_peaks else None,
            "<",
            t["peak_rss_mb"],
        ),
        _goal(
            "rss_growth_mb",
            "peak RSS for the large file minus for the small one < 20 MB",
            _get(workloads, "memory", "rss_difference_mb"),
            "<",
            t["rss_growth_mb"],
        ),
        _goal(
            "ceiling_over_pipeline",
            "server ceiling: curl -o /dev/null at least 3x as fast as the pipeline",
            pipe_wall / ceiling if ceiling and pipe_wall else None,
            ">=",
            t["ceiling_over_pipeline"],
        ),
    ]


def _pipeline_goals(workloads: dict[str, Any]) -> list[dict[str, Any]]:
    """The goals on what orchestration costs: many small files, medium files, no API URL."""
    t = GOAL_THRESHOLDS
    return [
        _goal(
            "small_vs_aria2_wall",
            f"many small files: pipeline wall / aria2c wall <= {t['small_vs_aria2_wall']:g}",
            _get(workloads, "small", "ratios", "aria2c", "wall"),
            "<=",
            t["small_vs_aria2_wall"],
        ),
        _goal(
            "small_api_cpu_ms",
            f"many small files: Prefect server CPU per file <= {t['small_api_cpu_ms']:g} ms",
            _get(workloads, "small", "per_file", "prefect_api_cpu_ms"),
            "<=",
            t["small_api_cpu_ms"],
        ),
        _goal(
            "small_cli_cpu_ms",
            f"many small files: CLI CPU per file <= {t['small_cli_cpu_ms']:g} ms",
            _get(workloads, "small", "per_file", "pipeline_cpu_ms"),
            "<=",
            t["small_cli_cpu_ms"],
        ),
        _goal(
            "medium_vs_curl_wall",
            "medium files: pipeline wall / curl|tee|md5sum (as many at once) wall "
            f"<= {t['medium_vs_curl_wall']:g}",
            _get(workloads, "medium", "ratios", "curl|tee|md5sum", "wall"),
            "<=",
            t["medium_vs_curl_wall"],
        ),
        _goal(
            "embedded_vs_running_wall",
            "one-file order without PREFECT_API_URL (later run) / with a running server, wall "
            f"<= {t['embedded_vs_running_wall']:g}",
            _get(workloads, "startup-embedded", "vs_running_server", EMBEDDED_LATER, "wall"),
            "<=",
            t["embedded_vs_running_wall"],
        ),
    ]


def _pipeline_summaries(workload: dict[str, Any]) -> list[dict[str, Any]]:
    if "tools" in workload:
        return [workload["tools"].get(PIPELINE, {})]
    return [
        part["tools"].get(PIPELINE, {})
        for part in workload.values()
        if isinstance(part, dict) and "tools" in part
    ]


def all_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of every workload, as written in the results."""
    runs: list[dict[str, Any]] = []
    for workload in results["workloads"].values():
        parts = (
            [workload]
            if "runs" in workload
            else [p for p in workload.values() if isinstance(p, dict) and "runs" in p]
        )
        for part in parts:
            runs += part["runs"]
    return runs


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def _rows(name: str, workload: dict[str, Any]) -> list[list[str]]:
    spec = workload["spec"]
    what = f"{name} ({spec['files']} x {_size(spec['file_bytes'])})"
    rows = []
    for tool, s in workload["tools"].items():
        counted = s.get("task_runs")
        task_runs = f"{counted['completed']}/{counted['expected']}" if counted else ""
        if "wall_s" not in s:
            rows.append([what, tool, "all runs failed", "", "", "", "", "", task_runs])
            continue
        if name.startswith("startup"):
            rate = ""
        elif name == "small":
            rate = f"{s['files_s']:.1f} files/s"
        else:
            rate = f"{s['mib_s']:.0f} MiB/s"
            if "net_of_startup_mib_s" in s:
                rate += f" (net {s['net_of_startup_mib_s']:.0f})"
        ratio = workload.get("ratios", {}).get(tool)
        api = f" +{s['api_cpu_s']:.1f} api" if tool == PIPELINE and "api_cpu_s" in s else ""
        rows.append(
            [
                what,
                tool,
                f"{s['wall_s']:.2f} s",
                rate,
                f"{s['cpu_s']:.2f} s{api}",
                f"{s['peak_rss_mb']:.0f} MB",
                f"{ratio['wall']:.2f}" if ratio else "",
                f"{ratio['speed']:.2f}" if ratio else "",
                task_runs,
            ]
        )
        what = ""
    return rows


def table(results: dict[str, Any]) -> str:
    """The figures as a plain-text table, then the per-file costs and the goals."""
    header = [
        "workload",
        "tool",
        "median wall",
        "throughput",
        "CPU (median)",
        "peak RSS",
        "pipe/tool wall",
        "pipe/tool speed",
        "Completed task runs",
    ]
    rows: list[list[str]] = []
    workloads = results["workloads"]
    for name, workload in workloads.items():
        if name == "memory":
            for key in ("small", "large"):
                rows += _rows(f"memory {key}", workload[key])
        else:
            rows += _rows(name, workload)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, ["-" * w for w in widths], *rows]
    ]
    m = results["machine"]
    cpu = next((line.split(":", 1)[1].strip() for line in m["lscpu"] if "Model name" in line), "?")
    memory = next((line.split()[1] for line in m["free"] if line.startswith("Mem:")), "?")
    lines.insert(
        0,
        f"machine: {m['nproc']} CPUs ({cpu}), {memory} RAM; Python {m['python']}, "
        f"Prefect {m['prefect']}, {m['curl'].split(' (')[0]}, {m['aria2c']}\n",
    )
    per_file = workloads.get("small", {}).get("per_file")
    if per_file:
        lines.append("")
        lines.append(
            "many small files, per file beyond the CLI's start-up: "
            + ", ".join(f"{k} {v:.2f}" for k, v in per_file.items())
        )
    embedded = workloads.get("startup-embedded", {})
    if "vs_running_server" in embedded:
        lines.append("")
        lines.append(
            "one-file order without PREFECT_API_URL (the CLI starts a temporary server) / "
            "with the running server, wall: "
            + ", ".join(f"{t} {r['wall']:.2f}x" for t, r in embedded["vs_running_server"].items())
        )
    together = {
        tool: s["peak_tree_rss_mb"]
        for tool, s in embedded.get("tools", {}).items()
        if "peak_tree_rss_mb" in s
    }
    if together:
        lines.append(
            "  peak RSS of the CLI and its temporary server together (sampled every 50 ms): "
            + ", ".join(f"{t} {mb:.0f} MB" for t, mb in together.items())
        )
    if "memory" in workloads and "rss_difference_mb" in workloads["memory"]:
        lines.append(
            f"memory: peak RSS difference large - small file: "
            f"{workloads['memory']['rss_difference_mb']:+.1f} MB"
        )
    noise = _noise(results)
    if noise:
        lines.append(noise)
    lines.append("")
    lines.append("goals:")
    for goal in results["goals"]:
        mark = {True: "met    ", False: "NOT met", None: "n/a    "}[goal["met"]]
        value = "-" if goal["value"] is None else f"{goal['value']:.2f}"
        lines.append(f"  {mark}  {goal['text']}: {value}")
    return "\n".join(lines)


def _noise(results: dict[str, Any]) -> str:
    """How busy the rest of the machine was while the runs went on (other users, services)."""
    runs = [r for r in all_runs(results) if r.get("ok") and r.get("window_s")]
    if not runs:
        return ""

    def share(run: dict[str, Any]) -> float:
        return float(run.get("other_cpu_s", 0.0)) / float(run["window_s"])

    worst = max(runs, key=share)
    return (
        "CPU of other processes and kernel threads during the runs: median "
        f"{statistics.median(share(r) for r in runs):.2f} cores, worst {share(worst):.2f} "
        f"({worst['tool']} rep {worst['rep']}); near 0 means the machine was ours alone"
    )


def write_json(results: dict[str, Any], path: Path) -> Path:
    """The results file, replaced atomically."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def chart(results: dict[str, Any], path: Path) -> Path:
    """A small PNG: one panel per workload, median of each tool, the pipeline highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = results["workloads"]
    panels: list[tuple[str, list[str], list[float], str]] = []
    for name, unit, key in (
        ("large", "MiB/s", "mib_s"),
        ("small", "files/s", "files_s"),
        ("medium", "MiB/s", "mib_s"),
        ("s3", "MiB/s", "mib_s"),
        ("dask", "MiB/s", "mib_s"),
    ):
        if name in workloads:
            tools = {t: s[key] for t, s in workloads[name]["tools"].items() if key in s}
            spec = workloads[name]["spec"]
            title = f"{name}: {spec['files']} x {_size(spec['file_bytes'])}"
            ceiling = tools.pop(CEILING, None)  # a bar 10x the others would flatten them
            if ceiling is not None:
                title += f"\n(server ceiling, curl -o /dev/null: {ceiling:.0f} {unit})"
            panels.append((title, list(tools), list(tools.values()), unit))
    if "memory" in workloads:
        memory = workloads["memory"]
        labels, values = [], []
        for key in ("small", "large"):
            summary = memory[key]["tools"].get(PIPELINE, {})
            if "peak_rss_mb" in summary:
                labels.append(_size(memory[key]["spec"]["file_bytes"]))
                values.append(summary["peak_rss_mb"])
        panels.append(("pipeline peak RSS", labels, values, "MB"))
    if "startup" in workloads:
        summary = workloads["startup"]["tools"].get(PIPELINE, {})
        if "wall_s" in summary:
            labels = ["wall", "CPU", "API CPU"]
            values = [summary["wall_s"], summary["cpu_s"], summary.get("api_cpu_s", 0.0)]
            panels.append(("CLI start-up (1 file of 1 KiB)", labels, values, "s"))
    if "startup-embedded" in workloads:
        walls = {"running server": _get(workloads, "startup", "tools", PIPELINE, "wall_s")}
        for tool, summary in workloads["startup-embedded"]["tools"].items():
            walls[tool] = summary.get("wall_s")
        shown = {label: value for label, value in walls.items() if value is not None}
        panels.append(("one-file order, wall", list(shown), list(shown.values()), "s"))
    columns = 3
    rows = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, (title, labels, values, unit) in zip(axes.flat, panels, strict=False):
        colours = ["#d9534f" if label == PIPELINE else "#7f8c8d" for label in labels]
        bars = ax.barh(labels, values, color=colours)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(unit, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8, padding=2)
        ax.margins(x=0.2)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    m = results["machine"]
    figure.suptitle(
        f"regards-order pipeline vs curl / aria2c (medians) - {m['nproc']} CPUs, "
        f"Prefect {m['prefect']}, {results['generated'][:10]}",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
