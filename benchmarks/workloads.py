"""The orders a benchmark serves, and one runner per tool that fetches them and is measured.

Every run gets a fresh simulator (a fresh order whose files are all waiting) and a fresh,
empty destination that is removed afterwards. A run counts only if it delivered every file
verified: the pipeline's report says so, curl's MD5 matches, aria2c exits 0 after its check.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.prefect_api import (
    DEADLINE_SECONDS,
    TaskRunCount,
    count_in_home,
    wait_for_task_runs,
)
from benchmarks.procs import (
    Measured,
    Service,
    machine_busy_seconds,
    run_measured,
    tree_cpu_seconds,
    wait_quiet,
)
from regards_order.paths import MANIFEST_NAME
from regards_order.settings import DownloadOptions
from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5

PROJECT = "bench"
USER = "bench@example.org"
PASSWORD = "bench-password"  # noqa: S105 - the simulator's throw-away account
TOKEN = "bench-long-lived-token"  # noqa: S105
MIB = 1024 * 1024

#: Requests for the order the CLI makes before the flow starts (its check that the order is
#: the user's and still there); every later one is a poll-order task run, each followed by a
#: list-available-files task run.
PREFLIGHT_ORDER_REQUESTS = 1

#: Seconds the CLI waits for its temporary server to start. Prefect's default, 20 s, is less
#: than creating the database of an empty PREFECT_HOME takes on a busy 2-core machine (22 s
#: measured: a newcomer's first run then fails); the benchmark measures how long it takes.
EMBEDDED_STARTUP_TIMEOUT = "120"


@dataclass(frozen=True)
class OrderSpec:
    """One order of `count` files of `size` bytes, cut into suborders as REGARDS would."""

    order_id: int
    count: int
    size: int
    suborder_files: int = 5000
    suborder_bytes: int = 100_000_000

    def scenario(self) -> Scenario:
        """The simulator's scenario: one user, this order, restored at once."""
        return Scenario.model_validate(
            {
                "project": PROJECT,
                "users": [{"username": USER, "password": PASSWORD, "tokens": [TOKEN]}],
                "suborder_max_files": self.suborder_files,
                "suborder_max_bytes": self.suborder_bytes,
                "restore_seconds": 0.0,
                "orders": [
                    {
                        "id": self.order_id,
                        "owner": USER,
                        "generate": [{"count": self.count, "size": self.size}],
                    }
                ],
            }
        )

    @property
    def total_bytes(self) -> int:
        """Bytes of the whole order."""
        return self.count * self.size


@dataclass(frozen=True)
class ServedFile:
    """A file as a baseline downloader needs it: where, under which name, which MD5."""

    url: str
    name: str
    size: int
    md5: str


def served_files(simulator: Simulator) -> list[ServedFile]:
    """The files of the simulator's only order, in the order the server lists them."""
    (order,) = simulator.scenario.orders
    resolved = simulator.scenario.resolve()[order.id]
    return [
        ServedFile(
            url=f"{simulator.url}/api/v1/rs-order/orders/files/{f.id}",
            name=f.filename,
            size=f.size,
            md5=content_md5(f.order_id, f.id, f.size),
        )
        for f in resolved
    ]


@dataclass
class Run:
    """One measured run of one tool."""

    tool: str
    rep: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    ok: bool
    error: str = ""
    #: CPU seconds the Prefect API server spent during this run (and right after it).
    api_cpu_s: float | None = None
    #: CPU seconds of the benchmark process meanwhile: the simulator serving the run.
    simulator_cpu_s: float | None = None
    #: CPU seconds of every other process (and kernel thread) of the machine meanwhile.
    other_cpu_s: float | None = None
    #: Seconds over which the three figures above were counted.
    window_s: float | None = None
    #: For baselines that time themselves (the s3fs upload): the timed part alone.
    inner_s: float | None = None
    #: Pipeline runs: the task runs the Prefect server recorded of the run's flow run.
    task_runs: dict[str, Any] | None = None
    #: Peak of the resident sets of the command's processes added up (sampled), where the
    #: command starts a server of its own: GNU time's peak is its largest single process.
    tree_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A plain dict for the results file."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}


@dataclass(frozen=True)
class Load:
    """Where the machine's CPU went while one command ran."""

    api_cpu_s: float | None  # None when the command ran without the benchmark's API
    simulator_cpu_s: float
    other_cpu_s: float
    window_s: float  # the run and the quiet moment after it, over which the above are counted


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _record(tool: str, rep: int, measured: Measured, load: Load, error: str) -> Run:
    """The Run of one measured command (ok when no error was found)."""
    return Run(
        tool=tool,
        rep=rep,
        wall_s=measured.wall_s,
        cpu_s=measured.cpu_s,
        max_rss_mb=measured.max_rss_mb,
        ok=not error,
        error=error,
        api_cpu_s=load.api_cpu_s,
        simulator_cpu_s=load.simulator_cpu_s,
        other_cpu_s=load.other_cpu_s,
        window_s=load.window_s,
    )


def flow_run_name(spec: OrderSpec) -> str:
    """The name the download flow gives its run (`flow_run_name` of download_order)."""
    return f"download-order-{spec.order_id}"


def _expected_task_runs(simulator: Simulator, spec: OrderSpec) -> int:
    """Task runs a successful run leaves Completed: one transfer per file (its retries are
    attempts of the same task run), a poll and a listing at each look at the order (as the
    simulator counted its order requests), the reading of the user's quota, and each listing
    of every file of the order (one dataset task here, paged by the default page size)."""
    requests = simulator.stats()["requests"]
    pages = max(1, math.ceil(spec.count / DownloadOptions().page_size))
    whole_listings = math.ceil(int(requests.get("dataset_files", 0)) / pages)
    return spec.count + 2 * _looks(simulator) + int(requests.get("quota", 0)) + whole_listings


def _looks(simulator: Simulator) -> int:
    """How many times the pipeline looked at the order (polled it, then listed its files)."""
    return int(simulator.stats()["requests"]["order"]) - PREFLIGHT_ORDER_REQUESTS


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _local_files(folder: Path) -> int:
    """Files delivered under `folder`, not counting the pipeline's own record folder and
    checksum manifest."""
    if not folder.exists():
        return 0
    return sum(
        1
        for path in folder.rglob("*")
        if path.is_file()
        and ".regards-order" not in path.parts
        and not path.name.endswith(".aria2")
        and path.relative_to(folder).as_posix() != MANIFEST_NAME
    )


class Harness:
    """Runs each tool against a simulator and measures it."""

    def __init__(self, work: Path, env: dict[str, str], api: Service, venv_bin: Path) -> None:
        self.work = work
        self.env = env
        self.api = api
        self.venv_bin = venv_bin
        self.logs = work / "logs"
        #: Longest wait for the Prefect server to have recorded a run's task runs.
        self.task_run_deadline = DEADLINE_SECONDS

    def _log_dir(self, label: str) -> Path:
        return self.logs / label

    def _run(
        self,
        label: str,
        command: Sequence[str],
        env: dict[str, str] | None = None,
        stdin: Path | None = None,
        *,
        settle: Callable[[Measured], None] | None = None,
        uses_api: bool = True,
        sample_tree_rss: bool = False,
    ) -> tuple[Measured, Load]:
        """Run one command between two quiet moments of the Prefect API, and account for the
        CPU of the whole machine meanwhile: the command's, the API's, this process's (the
        simulator) and everyone else's.

        `settle` is called once the command has ended, inside the window: what the API does
        for the run after its exit (the recorder's last flush) is the run's cost.
        `uses_api`: False for a command that runs without the benchmark's Prefect API.
        """
        # Whatever the Prefect server still digests from an earlier run must not slow this one.
        wait_quiet(self.api.pid)
        window_start = time.perf_counter()
        api_before, busy_before, own_before = (
            tree_cpu_seconds(self.api.pid),
            machine_busy_seconds(),
            _own_cpu_seconds(),
        )
        measured = run_measured(
            command,
            env=env or self.env,
            log_dir=self._log_dir(label),
            stdin=stdin,
            sample_tree_rss=sample_tree_rss,
        )
        if settle is not None:
            settle(measured)
        wait_quiet(self.api.pid)  # the API's share includes what it digests after the exit
        api = tree_cpu_seconds(self.api.pid) - api_before
        own = _own_cpu_seconds() - own_before
        busy = machine_busy_seconds() - busy_before
        other = max(0.0, busy - measured.cpu_s - api - own)
        window = time.perf_counter() - window_start
        return measured, Load(
            api_cpu_s=api if uses_api else None,
            simulator_cpu_s=own,
            other_cpu_s=other + (0.0 if uses_api else api),
            window_s=window,
        )

    # -- the pipeline ---------------------------------------------------------------------

    def pipeline(
        self,
        simulator: Simulator,
        spec: OrderSpec,
        target: str,
        *,
        label: str,
        rep: int,
        concurrency: int,
        local: Path | None,
        extra_args: Sequence[str] = (),
        extra_env: dict[str, str] | None = None,
        tool: str = "pipeline",
    ) -> Run:
        """`regards-order download` as a user runs it, against the benchmark's Prefect API;
        then the server must have recorded every task run of it Completed."""
        env = self.env | {"REGARDS_PASSWORD": PASSWORD, "PREFECT_API_URL": self.api.url}
        env |= extra_env or {}
        started = dt.datetime.now(dt.UTC)
        counted: list[TaskRunCount] = []  # filled once the command has ended

        def count_task_runs(measured: Measured) -> None:
            if measured.returncode == 0:
                expected = _expected_task_runs(simulator, spec)
                name, deadline = flow_run_name(spec), self.task_run_deadline
                counted.append(wait_for_task_runs(self.api.url, name, started, expected, deadline))

        command = self._download_command(simulator, spec, target, concurrency, extra_args)
        measured, load = self._run(label, command, env, settle=count_task_runs)
        run = _pipeline_run(tool, rep, measured, load, spec, local, next(iter(counted), None))
        return _note_looks(run, simulator)

    def pipeline_embedded(
        self,
        simulator: Simulator,
        spec: OrderSpec,
        target: Path,
        *,
        home: Path,
        label: str,
        rep: int,
        tool: str,
    ) -> Run:
        """`regards-order download` as a newcomer runs it: no PREFECT_API_URL, so the CLI
        starts Prefect's temporary server (a child process it waits for: GNU time counts its
        CPU) with `home` as PREFECT_HOME; then that server's database, left in `home`, must
        hold every task run of it Completed."""
        env = self.env | {"REGARDS_PASSWORD": PASSWORD, "PREFECT_HOME": str(home)}
        env |= {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": EMBEDDED_STARTUP_TIMEOUT}
        env.pop("PREFECT_API_URL", None)
        command = self._download_command(simulator, spec, str(target), 1, ())
        measured, load = self._run(label, command, env, uses_api=False, sample_tree_rss=True)
        counted = None
        if measured.returncode == 0:
            expected = _expected_task_runs(simulator, spec)
            counted = count_in_home(home, flow_run_name(spec), expected)
        run = _pipeline_run(tool, rep, measured, load, spec, target, counted)
        run.tree_rss_mb = measured.tree_rss_mb
        return _note_looks(run, simulator)

    def _download_command(
        self,
        simulator: Simulator,
        spec: OrderSpec,
        target: str,
        concurrency: int,
        extra_args: Sequence[str],
    ) -> list[str]:
        command = [str(self.venv_bin / "regards-order"), "download", str(spec.order_id)]
        command += ["--host", simulator.url, "--project", PROJECT, "--username", USER]
        command += ["--target", target, "--concurrency", str(concurrency), "--json"]
        return command + list(extra_args)

    # -- baselines ------------------------------------------------------------------------

    def curl_tee_md5sum(
        self, files: list[ServedFile], dest: Path, *, label: str, rep: int, parallel: int
    ) -> Run:
        """`curl URL | tee FILE | md5sum` per file (one pass), `parallel` at a time, each
        digest compared with the server's."""
        dest.mkdir(parents=True, exist_ok=True)
        listing = self.work / f"{label}.curl-list"
        listing.write_text(
            "".join(f"{f.url} {dest / f.name} {f.md5}\n" for f in files), encoding="utf-8"
        )
        one_file = (
            'set -o pipefail; sum=$(curl -fsS -H "Authorization: Bearer $BENCH_TOKEN" "$1"'
            ' | tee "$2" | md5sum) || exit 255; [ "${sum%% *}" = "$3" ] || exit 255'
        )
        command = ["xargs", "-P", str(parallel), "-n", "3", "bash", "-c", one_file, "curl-tee"]
        outcome = self._run(label, command, self.env | {"BENCH_TOKEN": TOKEN}, stdin=listing)
        listing.unlink()
        return self._baseline_run("curl|tee|md5sum", rep, outcome, dest, len(files))

    def aria2c(
        self, files: list[ServedFile], dest: Path, *, label: str, rep: int, parallel: int
    ) -> Run:
        """`aria2c -j N -i LIST`, each entry with its header and `checksum=md5=`; aria2c
        verifies every file after writing it and fails on a mismatch."""
        dest.mkdir(parents=True, exist_ok=True)
        listing = self.work / f"{label}.aria2-list"
        listing.write_text(
            "".join(
                f"{f.url}\n  out={f.name}\n  header=Authorization: Bearer {TOKEN}\n"
                f"  checksum=md5={f.md5}\n"
                for f in files
            ),
            encoding="utf-8",
        )
        command = ["aria2c", "-i", str(listing), "-d", str(dest), "-j", str(parallel)]
        # One connection per file (the server does not split bodies), no preallocation (it
        # would write every byte twice), quiet console: aria2c's fastest honest settings.
        command += ["--split=1", "--max-connection-per-server=1", "--file-allocation=none"]
        command += ["--allow-overwrite=true", "--auto-file-renaming=false", "--quiet=true"]
        command += ["--summary-interval=0", "--max-tries=1"]
        outcome = self._run(label, command)
        listing.unlink()
        return self._baseline_run("aria2c", rep, outcome, dest, len(files))

    def curl_devnull(self, file: ServedFile, *, label: str, rep: int) -> Run:
        """`curl -o /dev/null`: the server's ceiling, nothing written or hashed."""
        command = ["curl", "-fsS", "-H", f"Authorization: Bearer {TOKEN}", "-o", "/dev/null"]
        outcome = self._run(label, [*command, file.url])
        return self._baseline_run("curl -o /dev/null", rep, outcome, None, 1)

    def s3fs_upload(
        self, endpoint: str, url: str, spec: OrderSpec, file_id: int, *, label: str, rep: int
    ) -> Run:
        """The same bytes, already in memory, written to S3 by s3fs in 1 MiB writes."""
        command = [sys.executable, "-m", "benchmarks.s3_upload", endpoint, url]
        command += [str(spec.order_id), str(file_id), str(spec.size)]
        outcome = self._run(label, command)
        run = self._baseline_run("s3fs upload", rep, outcome, None, 1)
        measured = outcome[0]
        if run.ok:
            try:
                run.inner_s = float(json.loads(measured.stdout)["upload_s"])
            except (ValueError, KeyError, TypeError):
                run.ok, run.error = False, f"no timing on stdout: {measured.stdout[:200]!r}"
        return run

    def _baseline_run(
        self,
        tool: str,
        rep: int,
        outcome: tuple[Measured, Load],
        dest: Path | None,
        expected: int,
    ) -> Run:
        measured, load = outcome
        error = ""
        if measured.returncode != 0:
            error = f"exit {measured.returncode}: {_tail(measured.stderr)}"
        elif dest is not None and (found := _local_files(dest)) != expected:
            error = f"{found} files at the destination, expected {expected}"
        return _record(tool, rep, measured, load, error)


def _pipeline_run(
    tool: str,
    rep: int,
    measured: Measured,
    load: Load,
    spec: OrderSpec,
    local: Path | None,
    counted: TaskRunCount | None,
) -> Run:
    """The Run of a pipeline command: ok only if its report, the files at the target and
    the task runs the Prefect server recorded all say that every file was delivered."""
    error = ""
    if measured.returncode != 0:
        error = f"exit {measured.returncode}: {_tail(measured.stderr)}"
    else:
        try:
            counts = json.loads(measured.stdout)["counts"]
        except (ValueError, KeyError, TypeError):
            counts = {}
        if counts.get("downloaded") != spec.count:
            error = f"report counts {counts}, expected {spec.count} downloaded"
        elif local is not None and (found := _local_files(local)) != spec.count:
            error = f"{found} files at the target, expected {spec.count}"
        elif counted is not None and counted.short:
            error = (
                f"the Prefect server recorded {counted.completed} Completed task runs "
                f"(of {counted.recorded}), expected {counted.expected}: states were lost"
            )
    run = _record(tool, rep, measured, load, error)
    if counted is not None:
        run.task_runs = counted.as_json()
    return run


def _note_looks(run: Run, simulator: Simulator) -> Run:
    """Keep how many looks the run took, and over how many suborders the order came."""
    (order,) = simulator.stats()["orders"].values()
    run.extra |= {"looks": _looks(simulator), "suborders": len(order["suborders"])}
    return run


def clean(path: Path) -> None:
    """Remove a run's destination (and flush what the kernel still has to write of it)."""
    shutil.rmtree(path, ignore_errors=True)
    os.sync()
