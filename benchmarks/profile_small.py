"""Profile the pipeline on many small files: where does its CPU go?

    python -m benchmarks.profile_small [--files N] [--concurrency N] [--out DIR] [--server]

Starts a Prefect API and a simulator as the benchmark does, runs `regards-order download`
under `py-spy record` (on-CPU samples of every thread, native frames off), then sums the
samples by function (self and inclusive) and by package, and prints milliseconds per file.
`--server` samples the Prefect API's processes too, for the same run, summed apart.
Other sizes take the same path: `--files 100 --kib 8192 --concurrency 4` is the benchmark's
medium workload.
By default only the thread holding the GIL is sampled: the process is GIL-bound, so that is
where its time goes (C code that releases the GIL, such as OpenSSL loading certificates, is
then under-counted; `--all-threads` shows it, with idle pool threads mixed in).
The raw collapsed stacks stay in DIR (`py-spy`'s `raw` format, for flame-graph tools).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.bench import child_env, serving
from benchmarks.procs import prefect_server, run_measured
from benchmarks.workloads import PASSWORD, PROJECT, USER, OrderSpec, clean

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def package_of(path: str) -> str:
    """A short name for where a frame's code lives: a package, the stdlib module, or ours."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for ours in ("regards_order", "tasks", "flows"):
        if f"/{ours}/" in path or path.startswith(f"{ours}/"):
            return ours
    if "/python3." in path:
        module = path.rsplit("/python3.", 1)[1].split("/", 1)[-1]
        return "stdlib:" + module.split("/", 1)[0].removesuffix(".py")
    return path or "?"


def parse_frame(frame: str) -> tuple[str, str]:
    """(function label, package) of one py-spy frame `function (file:line)`."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "?"
    path = match["file"]
    short = path.split("site-packages/", 1)[-1] if "site-packages/" in path else path
    return f"{match['function']} ({short})", package_of(path)


def summarise(raw: Path, files: int, rate: int, top: int) -> str:
    """Self and inclusive time by function, self time by package, as text."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # Drop py-spy's thread and process labels, keep code frames.
        frames = [
            f for f in stack.split(";") if "(" in f and not f.startswith(("thread ", "process "))
        ]
        if not frames:
            continue
        total += count
        parsed = [parse_frame(f) for f in frames]
        function, package = parsed[-1]
        own[function] += count
        packages[package] += count
        for label in {label for label, _ in parsed}:
            inclusive[label] += count

    def ms_per_file(samples: int) -> float:
        return 1000.0 * samples / rate / files

    lines = [
        f"{total} samples at {rate} Hz = {total / rate:.1f} s of CPU "
        f"= {ms_per_file(total):.1f} ms per file ({files} files)",
        "",
        "by package (self time):",
    ]
    for package, count in packages.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {ms_per_file(count):6.2f} ms/file  {package}")
    lines += ["", "by function, self time:"]
    for function, count in own.most_common(top):
        lines.append(
            f"  {100 * count / total:5.1f}%  {ms_per_file(count):6.2f} ms/file  {function}"
        )
    lines += ["", "by function, inclusive time:"]
    for function, count in inclusive.most_common(top * 2):
        lines.append(
            f"  {100 * count / total:5.1f}%  {ms_per_file(count):6.2f} ms/file  {function}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the profile and print its summary."""
    parser = argparse.ArgumentParser(prog="profile_small", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--kib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--suborder-files", type=int, default=500)
    parser.add_argument(
        "--suborder-mb", type=int, default=100, help="suborder size limit, MB (default 100)"
    )
    parser.add_argument(
        "--server", action="store_true", help="also sample the Prefect API during the run"
    )
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true", help="also sample C frames")
    parser.add_argument(
        "--code",
        type=Path,
        default=None,
        help="profile the flows/, tasks/ and regards_order/ of another folder (a variant being "
        "tried) instead of this checkout's",
    )
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every running thread, not only the one holding the GIL (py-spy cannot "
        "tell some waits from work: idle pool threads then show up as busy)",
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "regards-profile")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="regards-profile-"))
    env = child_env(work, args.code)
    venv_bin = Path(sys.executable).parent
    spec = OrderSpec(
        order_id=3,
        count=args.files,
        size=args.kib * 1024,
        suborder_files=args.suborder_files,
        suborder_bytes=args.suborder_mb * 1_000_000,
    )
    raw = args.out / "small.raw.txt"
    server_raw = args.out / "server.raw.txt"
    try:
        prefect = str(venv_bin / "prefect")
        with (
            prefect_server(work / "prefect", env, work / "prefect.log", prefect) as api,
            serving(spec) as simulator,
        ):
            command = [str(venv_bin / "py-spy"), "record", "--format", "raw", "--output", str(raw)]
            command += ["--rate", str(args.rate), "--threads"]
            command += [] if args.all_threads else ["--gil"]
            command += ["--native"] if args.native else []
            command += ["--"]
            command += [str(venv_bin / "regards-order"), "download", str(spec.order_id)]
            command += ["--host", simulator.url, "--project", PROJECT, "--username", USER]
            command += ["--target", str(work / "target"), "--concurrency", str(args.concurrency)]
            run_env = env | {"REGARDS_PASSWORD": PASSWORD, "PREFECT_API_URL": api.url}
            with _sampling(args.server, api.pid, server_raw, args.rate, venv_bin):
                done = run_measured(command, env=run_env, log_dir=args.out / "logs")
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
    finally:
        clean(work)
    print(f"profiled run: {done.wall_s:.1f} s wall; raw stacks in {raw}\n")
    print(summarise(raw, args.files, args.rate, args.top))
    if args.server:
        print(f"\nthe Prefect API during that run (raw stacks in {server_raw}):\n")
        print(summarise(server_raw, args.files, args.rate, args.top))
    return 0


@contextlib.contextmanager
def _sampling(wanted: bool, pid: int, raw: Path, rate: int, venv_bin: Path) -> Iterator[None]:
    """`py-spy record` of process `pid` and its children while the block runs (if `wanted`);
    py-spy writes its samples when it gets SIGINT."""
    if not wanted:
        yield
        return
    command = [str(venv_bin / "py-spy"), "record", "--pid", str(pid), "--subprocesses"]
    command += ["--format", "raw", "--output", str(raw), "--rate", str(rate)]
    # Only the thread holding the GIL: the server's database threads wait in Queue.get, which
    # py-spy counts as running (SQLite's own work, done without the GIL, is then missed).
    command += ["--gil"]
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)
        try:
            sampler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sampler.kill()
            sampler.wait()


if __name__ == "__main__":
    sys.exit(main())
