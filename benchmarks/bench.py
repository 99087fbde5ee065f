"""Benchmark the pipeline against curl and aria2c on the same simulated REGARDS server.

    python -m benchmarks.bench [--reps N] [--workloads large,small,...] [sizes...]

The pipeline is measured as users run it: `regards-order download` in its own process, against
one `prefect server start` that serves every run of the benchmark (its start is not counted;
the CLI's own fixed start-up is measured apart, on a one-file order, and so is the same order
without PREFECT_API_URL, where the CLI starts a temporary server of its own). A pipeline run
counts only if the Prefect server then holds every task run of it Completed. Baselines run
against the same kind of server, tools alternate within each repetition, every run writes to a
fresh folder that is removed afterwards. Medians, ratios, CPU and peak RSS are printed (and
kept in `<out>/latest.txt`), written to `<out>/latest.json`, and drawn in `<out>/latest.png`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.procs import PREFECT_SERVER_SETTINGS, check_tools, moto_server, prefect_server
from benchmarks.report import EMBEDDED_FIRST, EMBEDDED_LATER
from benchmarks.workloads import (
    MIB,
    Harness,
    OrderSpec,
    Run,
    clean,
    served_files,
)
from regards_order.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = ("startup", "startup-embedded", "large", "small", "medium", "memory", "s3", "dask")
S3_BUCKET = "regards-bench"

ToolRun = Callable[[Simulator, Path, int], Run]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: what to run, how big, how often, where the results go."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--reps", type=int, default=3, help="repetitions of each tool per workload (default 3)")
    add(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ", ".join(WORKLOADS),
    )
    add("--large-mib", type=int, default=1024, help="large file size (default 1024)")
    add("--small-files", type=int, default=2000, help="many-small-files count (default 2000)")
    add("--small-kib", type=int, default=16, help="size of each small file (default 16)")
    add("--small-concurrency", type=int, default=8)
    add(
        "--small-reps",
        type=int,
        default=2,
        help="repetitions of the many-small-files workload (default 2: at ~2 min a pipeline "
        "run today, 3 would not fit the 10-minute budget; raise it once the pipeline is fast)",
    )
    add("--small-suborder-files", type=int, default=500, help="files per suborder (default 500)")
    add("--medium-files", type=int, default=100, help="medium files count (default 100)")
    add("--medium-mib", type=int, default=8, help="size of each medium file (default 8)")
    add("--medium-concurrency", type=int, default=4)
    add(
        "--medium-suborder-mb",
        type=int,
        default=100,
        help="suborder size limit of the medium order, MB (default 100, as REGARDS)",
    )
    add("--memory-small-mib", type=int, default=100)
    add("--memory-large-mib", type=int, default=2048)
    add("--memory-reps", type=int, default=2, help="repetitions of the memory runs (default 2)")
    add("--s3-mib", type=int, default=256, help="size of the file sent to moto (default 256)")
    add("--dask-files", type=int, default=200, help="files of the Dask workload (default 200)")
    add("--dask-kib", type=int, default=256, help="size of each, KiB (default 256)")
    add("--dask-workers", type=int, default=2, help="local Dask worker processes (default 2)")
    add("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    add("--workdir", type=Path, default=None, help="parent of the scratch folder (default: TMPDIR)")
    add("--keep-work", action="store_true", help="keep the scratch folder (logs of every run)")
    add(
        "--code",
        type=Path,
        default=None,
        help="run the pipeline from another folder's flows/, tasks/ and regards_order/ (a copy "
        "with a change being tried), against the same baselines",
    )
    add(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change the environment of the benchmark's Prefect server (repeatable): NAME=VALUE "
        "sets or overrides one of benchmarks.procs.PREFECT_SERVER_SETTINGS, NAME= drops it "
        "(Prefect's default then applies), to compare server settings",
    )
    args = parser.parse_args(argv)
    try:
        args.server_settings = server_settings(args.server_env)
    except ValueError as error:
        parser.error(str(error))
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if min(args.reps, args.memory_reps, args.small_reps) < 1:
        parser.error("repetitions must be at least 1")
    return args


def server_settings(changes: Sequence[str]) -> dict[str, str]:
    """PREFECT_SERVER_SETTINGS with the `NAME=VALUE` changes of --server-env applied."""
    settings = dict(PREFECT_SERVER_SETTINGS)
    for change in changes:
        name, equals, value = change.partition("=")
        if not equals or not name.startswith("PREFECT_"):
            raise ValueError(f"--server-env takes PREFECT_...=VALUE, not {change!r}")
        if value:
            settings[name] = value
        else:
            settings.pop(name, None)
    return settings


def say(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@contextmanager
def serving(spec: OrderSpec) -> Iterator[Simulator]:
    """A fresh simulator whose order is untouched: every file waits to be downloaded."""
    with Simulator(spec.scenario()) as simulator:
        yield simulator


def served(simulator: Simulator) -> dict[str, int]:
    """What the simulator served one run: every tool faces the same server, and this shows
    whether one was answered differently (a 202 for a file not restored yet, a body cut)."""
    stats = simulator.stats()
    return {
        "download_requests": stats["requests"]["download"],
        "downloads_completed": stats["downloads_completed"],
        "downloads_aborted": stats["downloads_aborted"],
        "order_requests": stats["requests"]["order"],
        "listing_requests": stats["requests"]["files"],
        "max_active_suborders": max(stats["max_active_suborders"].values(), default=0),
    }


def alternate(
    harness: Harness, workload: str, spec: OrderSpec, tools: dict[str, ToolRun], reps: int
) -> list[Run]:
    """Each repetition runs every tool once, starting with a different tool each time."""
    names, runs = list(tools), []
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            dest = harness.work / workload / f"{_slug(name)}-{rep}"
            with serving(spec) as simulator:
                run = tools[name](simulator, dest, rep)
            run.extra["served"] = served(simulator)
            clean(dest)
            runs.append(run)
            state = "ok" if run.ok else f"FAILED: {run.error}"
            say(
                f"  {workload:8} {name:18} rep {rep}: {run.wall_s:7.2f} s wall, "
                f"{run.cpu_s:6.2f} s CPU, {run.max_rss_mb:6.0f} MB RSS  {state}"
            )
    return runs


def pipeline_tool(
    harness: Harness,
    spec: OrderSpec,
    workload: str,
    concurrency: int,
    extra_args: Sequence[str] = (),
    tool: str = "pipeline",
) -> ToolRun:
    """The pipeline into a local folder."""

    def run(simulator: Simulator, dest: Path, rep: int) -> Run:
        return harness.pipeline(
            simulator,
            spec,
            str(dest),
            label=f"{workload}/pipeline-{_slug(' '.join(extra_args))}-{rep}",
            rep=rep,
            concurrency=concurrency,
            local=dest,
            extra_args=extra_args,
            tool=tool,
        )

    return run


def curl_tools(
    harness: Harness, workload: str, parallel: int, aria: bool = True
) -> dict[str, ToolRun]:
    """The local baselines: curl | tee | md5sum and aria2c with its checksum."""

    def curl(simulator: Simulator, dest: Path, rep: int) -> Run:
        files = served_files(simulator)
        label = f"{workload}/curl-{rep}"
        return harness.curl_tee_md5sum(files, dest, label=label, rep=rep, parallel=parallel)

    def aria2(simulator: Simulator, dest: Path, rep: int) -> Run:
        files = served_files(simulator)
        return harness.aria2c(
            files, dest, label=f"{workload}/aria2c-{rep}", rep=rep, parallel=parallel
        )

    tools: dict[str, ToolRun] = {"curl|tee|md5sum": curl}
    if aria:
        tools["aria2c"] = aria2
    return tools


# -- workloads ---------------------------------------------------------------------------


def run_startup(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """The CLI's fixed cost: a one-file order of 1 KiB."""
    spec = OrderSpec(order_id=1, count=1, size=1024)
    tools = {"pipeline": pipeline_tool(harness, spec, "startup", 1)}
    runs = alternate(harness, "startup", spec, tools, args.reps)
    return {"spec": _spec(spec), "runs": runs}


def run_startup_embedded(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """The same one-file order as a newcomer runs it: no PREFECT_API_URL, so the CLI starts
    Prefect's temporary server itself. A newcomer's first run also creates the database in
    an empty PREFECT_HOME; every later run finds it there: both are measured."""
    spec = OrderSpec(order_id=1, count=1, size=1024)
    used_home = harness.work / "embedded-home"
    with serving(spec) as simulator:  # the first run of that home, not measured
        dest = harness.work / "embedded-warm-up"
        run = harness.pipeline_embedded(
            simulator, spec, dest, home=used_home, label="embedded-warm-up", rep=0, tool="-"
        )
    clean(dest)
    if not run.ok:
        raise SystemExit(f"bench: the pipeline does not run without an API URL: {run.error}")

    def later_run(simulator: Simulator, dest: Path, rep: int) -> Run:
        return harness.pipeline_embedded(
            simulator,
            spec,
            dest,
            home=used_home,
            label=f"startup-embedded/later-{rep}",
            rep=rep,
            tool=EMBEDDED_LATER,
        )

    def first_run(simulator: Simulator, dest: Path, rep: int) -> Run:
        home = harness.work / f"embedded-home-{rep}"  # empty: the CLI creates the database
        try:
            return harness.pipeline_embedded(
                simulator,
                spec,
                dest,
                home=home,
                label=f"startup-embedded/first-{rep}",
                rep=rep,
                tool=EMBEDDED_FIRST,
            )
        finally:
            clean(home)

    tools: dict[str, ToolRun] = {EMBEDDED_LATER: later_run, EMBEDDED_FIRST: first_run}
    runs = alternate(harness, "startup-embedded", spec, tools, args.reps)
    return {"spec": _spec(spec), "runs": runs}


def run_large(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """One large file to a local folder."""
    spec = OrderSpec(order_id=2, count=1, size=args.large_mib * MIB)
    tools = {"pipeline": pipeline_tool(harness, spec, "large", 1)}
    tools |= curl_tools(harness, "large", 1)

    def ceiling(simulator: Simulator, dest: Path, rep: int) -> Run:
        (file,) = served_files(simulator)
        return harness.curl_devnull(file, label=f"large/devnull-{rep}", rep=rep)

    tools["curl -o /dev/null"] = ceiling
    return {"spec": _spec(spec), "runs": alternate(harness, "large", spec, tools, args.reps)}


def run_small(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """Many small files over several suborders and pages, against aria2c -j N."""
    spec = OrderSpec(
        order_id=3,
        count=args.small_files,
        size=args.small_kib * 1024,
        suborder_files=args.small_suborder_files,
    )
    concurrency = args.small_concurrency
    tools = {"pipeline": pipeline_tool(harness, spec, "small", concurrency)}
    tools["aria2c"] = curl_tools(harness, "small", concurrency)["aria2c"]
    runs = alternate(harness, "small", spec, tools, args.small_reps)
    return {"spec": _spec(spec) | {"concurrency": concurrency}, "runs": runs}


def run_medium(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """Medium files, a few at a time, against the same baselines."""
    spec = OrderSpec(
        order_id=4,
        count=args.medium_files,
        size=args.medium_mib * MIB,
        suborder_bytes=args.medium_suborder_mb * 1_000_000,
    )
    concurrency = args.medium_concurrency
    tools = {"pipeline": pipeline_tool(harness, spec, "medium", concurrency)}
    tools |= curl_tools(harness, "medium", concurrency)
    runs = alternate(harness, "medium", spec, tools, args.reps)
    return {"spec": _spec(spec) | {"concurrency": concurrency}, "runs": runs}


def run_memory(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of the pipeline for a small and a large single file."""
    result: dict[str, Any] = {}
    for key, mib, order_id in (
        ("small", args.memory_small_mib, 5),
        ("large", args.memory_large_mib, 6),
    ):
        spec = OrderSpec(order_id=order_id, count=1, size=mib * MIB)
        tools = {"pipeline": pipeline_tool(harness, spec, f"memory-{key}", 1)}
        runs = alternate(harness, f"memory-{key}", spec, tools, args.memory_reps)
        result[key] = {"spec": _spec(spec), "runs": runs}
    return result


def run_s3(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """One file to moto's S3 server, against an s3fs upload of the same bytes from memory."""
    import s3fs

    spec = OrderSpec(order_id=7, count=1, size=args.s3_mib * MIB)
    moto = str(Path(sys.executable).parent / "moto_server")
    with moto_server(harness.env, harness.work / "moto.log", moto) as s3:
        fs = s3fs.S3FileSystem(endpoint_url=s3.url)
        fs.mkdir(S3_BUCKET)
        endpoint_option = f"endpoint_url={s3.url}"

        def pipeline(simulator: Simulator, dest: Path, rep: int) -> Run:
            url = f"s3://{S3_BUCKET}/pipeline-{rep}"
            run = harness.pipeline(
                simulator,
                spec,
                url,
                label=f"s3/pipeline-{rep}",
                rep=rep,
                concurrency=1,
                local=None,
                extra_args=["--storage-option", endpoint_option],
            )
            fs.rm(url, recursive=True)  # moto keeps objects in memory
            return run

        def upload(simulator: Simulator, dest: Path, rep: int) -> Run:
            url = f"s3://{S3_BUCKET}/s3fs-{rep}/file-00000.dat"
            (file,) = simulator.scenario.resolve()[spec.order_id]
            run = harness.s3fs_upload(s3.url, url, spec, file.id, label=f"s3/s3fs-{rep}", rep=rep)
            fs.rm(url.rsplit("/", 1)[0], recursive=True)
            return run

        tools: dict[str, ToolRun] = {"pipeline": pipeline, "s3fs upload": upload}
        runs = alternate(harness, "s3", spec, tools, args.reps)
    return {"spec": _spec(spec), "runs": runs}


def warm_up(harness: Harness) -> None:
    """One unmeasured run: the first flow run of a fresh API and a cold interpreter cost more."""
    spec = OrderSpec(order_id=1, count=1, size=1024)
    dest = harness.work / "warm-up"
    with serving(spec) as simulator:
        run = harness.pipeline(
            simulator, spec, str(dest), label="warm-up", rep=0, concurrency=1, local=dest
        )
    clean(dest)
    if not run.ok:
        raise SystemExit(f"bench: the pipeline does not run: {run.error}")
    say(f"  warm-up run: {run.wall_s:.2f} s")


def _spec(spec: OrderSpec) -> dict[str, Any]:
    return {"files": spec.count, "file_bytes": spec.size, "total_bytes": spec.total_bytes}


def run_dask(harness: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """The same order through the thread pool ("pipeline") and through a local Dask cluster:
    when does spreading the transfers over worker processes pay off?"""
    spec = OrderSpec(order_id=8, count=args.dask_files, size=args.dask_kib * 1024)
    dask = ["--task-runner", "dask", "--dask-workers", str(args.dask_workers)]
    tools = {
        "pipeline": pipeline_tool(harness, spec, "dask", 4),
        "pipeline, dask": pipeline_tool(harness, spec, "dask", 4, dask, tool="pipeline, dask"),
    }
    runs = alternate(harness, "dask", spec, tools, args.reps)
    return {"spec": _spec(spec) | {"concurrency": 4}, "runs": runs}


RUNNERS: dict[str, Callable[[Harness, argparse.Namespace], dict[str, Any]]] = {
    "startup": run_startup,
    "startup-embedded": run_startup_embedded,
    "large": run_large,
    "small": run_small,
    "medium": run_medium,
    "memory": run_memory,
    "s3": run_s3,
    "dask": run_dask,
}


def child_env(work: Path, code: Path | None = None) -> dict[str, str]:
    """The environment of every measured process and server; `code` is a folder whose flows/,
    tasks/ and regards_order/ are imported instead of this checkout's (a variant to compare)."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.pop("AWS_PROFILE", None)
    env |= {
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # moto accepts any credentials; never let a run reach a real AWS account.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(code.resolve()) if code else None, str(REPO), env.get("PYTHONPATH")])
        ),
    }
    return env


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen workloads, print the table, write the JSON and the chart."""
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: servers stopped, scratch folder removed.
    signal.signal(signal.SIGTERM, _terminate)
    missing = check_tools("curl", "aria2c", "md5sum", "tee", "xargs")
    if missing:
        say(f"bench: missing tools: {', '.join(missing)} (`make bench` installs them)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="regards-bench-", dir=args.workdir))
    env = child_env(work, args.code)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    os.environ["AWS_DEFAULT_REGION"] = env["AWS_DEFAULT_REGION"]
    venv_bin = Path(sys.executable).parent
    began = time.monotonic()
    say(f"scratch folder {work}")
    measured: dict[str, Any] = {}
    try:
        prefect = str(venv_bin / "prefect")
        log = work / "prefect-server.log"
        with prefect_server(work / "prefect", env, log, prefect, args.server_settings) as api:
            say(f"Prefect API at {api.url} (pid {api.pid}), with {args.server_settings}")
            harness = Harness(work, env, api, venv_bin)
            warm_up(harness)
            for name in args.workloads:
                say(f"workload {name}")
                measured[name] = RUNNERS[name](harness, args)
    finally:
        if not args.keep_work:
            clean(work)
    results = report.build(measured, args, elapsed=time.monotonic() - began)
    text = report.table(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.txt").write_text(text + "\n", encoding="utf-8")
    json_path = report.write_json(results, args.out / "latest.json")
    png_path = report.chart(results, args.out / "latest.png")
    say(f"wrote {json_path} and {png_path} in {time.monotonic() - began:.0f} s")
    failed = [r for r in report.all_runs(results) if not r["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
