"""The benchmark runs end to end at tiny sizes and writes well-formed results.

Nothing here asserts a duration or a ratio's value: the benchmark is the measure, this only
keeps it working.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

TINY = [
    "--reps=1",
    "--memory-reps=1",
    "--small-reps=1",
    "--large-mib=2",
    "--small-files=12",
    "--small-kib=1",
    "--small-suborder-files=5",  # several suborders and pages even at this size
    "--medium-files=3",
    "--medium-mib=1",
    "--memory-small-mib=1",
    "--memory-large-mib=3",
    "--s3-mib=6",  # above s3fs's 5 MiB part size: a real multipart upload
    "--dask-files=6",
    "--dask-kib=4",
]

COMPARISONS = {
    "large": {"curl|tee|md5sum", "aria2c", "curl -o /dev/null"},
    "small": {"aria2c"},
    "medium": {"curl|tee|md5sum", "aria2c"},
    "s3": {"s3fs upload"},
    "dask": {"pipeline, dask"},
}


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    shutil.which("curl") is None
    or shutil.which("aria2c") is None
    or not Path("/usr/bin/time").exists(),
    reason="the benchmark needs curl, aria2c and GNU time (`make bench` installs them)",
)
def test_benchmark_writes_every_workload_ratio_and_goal(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", *TINY, f"--out={out}", f"--workdir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((out / "latest.json").read_text())
    workloads = results["workloads"]
    assert set(workloads) == {
        "startup",
        "startup-embedded",
        "large",
        "small",
        "medium",
        "memory",
        "s3",
        "dask",
    }

    for name, baselines in COMPARISONS.items():
        workload = workloads[name]
        assert set(workload["tools"]) == {"pipeline", *baselines}
        for summary in workload["tools"].values():
            assert summary["runs_ok"] == summary["runs"] == 1
            assert summary["wall_s"] > 0 and summary["peak_rss_mb"] > 0
        assert set(workload["ratios"]) == baselines
        for ratio in workload["ratios"].values():
            assert ratio["wall"] > 0 and ratio["speed"] > 0
        assert workload["tools"]["pipeline"]["api_cpu_s"] >= 0

    assert set(workloads["small"]["per_file"]) == {
        "pipeline_cpu_ms",
        "prefect_api_cpu_ms",
        "overhead_ms",
    }
    memory = workloads["memory"]
    assert memory["small"]["tools"]["pipeline"]["peak_rss_mb"] > 0
    assert memory["large"]["tools"]["pipeline"]["peak_rss_mb"] > 0
    assert isinstance(memory["rss_difference_mb"], float)
    assert workloads["startup"]["tools"]["pipeline"]["runs_ok"] == 1

    # Every pipeline run, with or without the benchmark's server, left all of its task runs
    # Completed on the server it used: one transfer per file, a poll and a listing per look.
    pipeline_runs = [
        (part["spec"]["files"], run)
        for part in _parts(workloads)
        for run in part["runs"]
        if run["tool"].startswith(("pipeline", "embedded"))
    ]
    assert len(pipeline_runs) == 11
    for files, run in pipeline_runs:
        counted, looks = run["task_runs"], run["extra"]["looks"]
        assert looks >= 1
        assert counted["completed"] == counted["recorded"] == counted["expected"], run
        # A transfer per file, a poll and a listing per look, the quota, and every file of the
        # order listed at the first look and at the end.
        assert counted["expected"] == files + 2 * looks + 3
    (small_run,) = [r for r in workloads["small"]["runs"] if r["tool"] == "pipeline"]
    assert small_run["extra"]["suborders"] == 3  # 12 files, 5 per suborder: several looks
    assert small_run["extra"]["looks"] >= 2

    # Without PREFECT_API_URL, on an empty PREFECT_HOME and on one used before, beside the
    # running server's start-up.
    embedded = workloads["startup-embedded"]
    assert set(embedded["tools"]) == {"embedded, later run", "embedded, first run"}
    for tool, summary in embedded["tools"].items():
        assert summary["runs_ok"] == summary["runs"] == 1
        assert "api_cpu_s" not in summary  # its server is the CLI's child, in its CPU
        # The CLI and its temporary server together hold more than the larger of the two.
        assert summary["peak_tree_rss_mb"] > summary["peak_rss_mb"]
        assert embedded["vs_running_server"][tool]["wall"] > 0

    assert len(results["goals"]) == 11
    for goal in results["goals"]:
        if goal["goal"] == "large_vs_curl_speed_net" and goal["value"] is None:
            # At smoke sizes the large run may take less than the start-up run's median: there
            # is then no net transfer time to compare, and the goal says n/a.
            net = workloads["large"]["tools"]["pipeline"]["net_of_startup_wall_s"]
            assert net <= 0 and goal["met"] is None
        else:
            assert goal["met"] in (True, False), goal
    assert results["machine"]["nproc"]
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pipe/tool wall" in (out / "latest.txt").read_text()
    assert "pipe/tool wall" in done.stdout  # the table
    assert "Completed task runs" in done.stdout
    assert "without PREFECT_API_URL" in done.stdout
    assert not list(tmp_path.glob("regards-bench-*")), "the scratch folder is removed"


def _parts(workloads: dict[str, Any]) -> list[dict[str, Any]]:
    """Every order the benchmark served: its spec and its runs."""
    parts = [w for w in workloads.values() if "runs" in w]
    return parts + [p for p in workloads["memory"].values() if isinstance(p, dict) and "runs" in p]
