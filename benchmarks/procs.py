"""Running and measuring processes: wall time, CPU time and peak RSS of one command, and the
long-lived services a benchmark needs (a Prefect API, moto's S3 server).

Each measured command runs under GNU time, which reports its CPU (user + system, with the
children it waited for) and the peak RSS of the largest process of that tree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from regards_order.cli.server import SERVER_SETTINGS

#: Clock ticks per second of /proc/<pid>/stat times, and bytes per page of its sizes.
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024.0 * 1024.0

#: The environment of every Prefect server the project starts: the same as the command
#: line's temporary server and the tests' (the task-run recorder writes in batches).
PREFECT_SERVER_SETTINGS: dict[str, str] = dict(SERVER_SETTINGS)


@dataclass(frozen=True)
class Measured:
    """One finished command: how long it took, what it cost, how it ended."""

    returncode: int
    wall_s: float
    cpu_s: float  # user + system, of the process and the children it waited for
    max_rss_mb: float  # peak resident set of the largest process in that tree
    stdout: str
    stderr: str
    tree_rss_mb: float | None = None  # peak of the tree's resident sets added up, if sampled


#: GNU time: it reports the peak RSS of the command itself. A child's own ru_maxrss cannot be
#: trusted here: Linux starts it at the forking process's peak (kept across exec), and the
#: benchmark process, which serves the simulator, is bigger than some of the tools it measures.
GNU_TIME = "/usr/bin/time"


def run_measured(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path,
    stdin: Path | None = None,
    timeout: float = 1800.0,
    sample_tree_rss: bool = False,
) -> Measured:
    """Run `command` to its end and measure it; stdout and stderr go through files, not pipes,
    so that a large `--json` report never blocks the child. `sample_tree_rss`: also sample the
    resident sets of all its processes added up (for a command that starts a server)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    usage_path = log_dir / "usage.txt"
    timed = [GNU_TIME, "-f", "%U %S %M", "-o", str(usage_path), *command]
    source = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
    with out_path.open("wb") as out, err_path.open("wb") as err, contextlib.ExitStack() as stack:
        if stdin is not None:
            stack.callback(source.close)  # type: ignore[union-attr]
        began = time.perf_counter()
        child = subprocess.Popen(timed, env=env, cwd=cwd, stdin=source, stdout=out, stderr=err)
        sampler = _TreeRssSampler(child.pid) if sample_tree_rss else None
        try:
            status = _wait(child, timeout)
        except BaseException:  # interrupted: leave no measured process behind
            child.kill()
            child.wait()
            raise
        finally:
            tree_rss = sampler.stop() if sampler is not None else None
        wall = time.perf_counter() - began
    # The last line holds the figures; a line before it tells of a signal, if any.
    user, system, max_rss_kib = usage_path.read_text().strip().splitlines()[-1].split()
    return Measured(
        returncode=status,
        wall_s=wall,
        cpu_s=float(user) + float(system),
        max_rss_mb=int(max_rss_kib) / 1024.0,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        tree_rss_mb=tree_rss,
    )


def check_tools(*names: str) -> list[str]:
    """The command-line tools among `names` (and GNU time) that are missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if not Path(GNU_TIME).exists():
        missing.append(f"{GNU_TIME} (Debian package: time)")
    return missing


def _wait(child: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return child.wait(timeout=timeout)  # a blocking wait: the simulator's threads run
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class _Proc:
    parent: int
    cpu_s: float  # its own and that of the children it waited for
    rss_bytes: int


def _processes() -> dict[int, _Proc]:
    """Every live process of the machine, from /proc/<pid>/stat."""
    table: dict[int, _Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = _Proc(
            parent=int(fields[1]),
            # utime, stime, cutime, cstime: fields 14-17 of stat(5), 12-15 here.
            cpu_s=sum(int(value) for value in fields[11:15]) / _TICKS,
            rss_bytes=int(fields[21]) * _PAGE,  # rss (pages): field 24
        )
    return table


def _tree(table: dict[int, _Proc], root: int) -> list[_Proc]:
    """`root` and its live descendants."""
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            found.append(table[pid])
        frontier += [child for child, proc in table.items() if proc.parent == pid]
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and every live descendant."""
    return sum(proc.cpu_s for proc in _tree(_processes(), root))


class _TreeRssSampler:
    """Samples, on a thread, the resident sets of a process tree added up; keeps the peak.

    GNU time reports the largest single process of a tree: a command that starts a server of
    its own holds both at once, and a sample of their sum shows it (at the sampling's grain).
    """

    INTERVAL = 0.05

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_bytes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(self.INTERVAL):
            tree = _tree(_processes(), self.root)[1:]  # not GNU time itself
            self.peak_bytes = max(self.peak_bytes, sum(proc.rss_bytes for proc in tree))

    def stop(self) -> float:
        """Stop sampling; the peak in MB."""
        self._done.set()
        self._thread.join()
        return self.peak_bytes / MB


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def wait_quiet(
    pid: int, *, cpu_share: float = 0.05, window: float = 0.3, limit: float = 20.0
) -> None:
    """Wait until the process tree of `pid` uses less than `cpu_share` of a core over `window`
    seconds (or `limit` seconds have passed): background work of one run must not slow the next."""
    deadline = time.monotonic() + limit
    before = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        after = tree_cpu_seconds(pid)
        if after - before < cpu_share * window:
            return
        before = after


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2.0):  # noqa: S310 - a local http URL
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Service:
    """A server process started for the benchmark."""

    url: str
    pid: int


@contextlib.contextmanager
def _service(
    command: list[str], env: dict[str, str], log: Path, url: str, health: str, timeout: float
) -> Iterator[Service]:
    """Run `command` (its output to `log`) until `url + health` answers; stop it afterwards."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_http(url + health, process, Path(command[0]).name, timeout=timeout)
        yield Service(url=url, pid=process.pid)
    finally:
        _stop(process)


@contextlib.contextmanager
def prefect_server(
    home: Path,
    env: dict[str, str],
    log: Path,
    executable: str,
    settings: dict[str, str] | None = None,
) -> Iterator[Service]:
    """One `prefect server start` on 127.0.0.1 with its own PREFECT_HOME, for every flow run,
    with `settings` (PREFECT_SERVER_SETTINGS unless given) in its environment."""
    port = free_port()
    chosen = PREFECT_SERVER_SETTINGS if settings is None else settings
    server_env = env | chosen | {"PREFECT_HOME": str(home)}
    server_env.pop("PREFECT_API_URL", None)
    command = [executable, "server", "start"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--analytics-off", "--no-ui"]
    api = f"http://127.0.0.1:{port}/api"
    with _service(command, server_env, log, api, "/health", timeout=120.0) as service:
        yield service


@contextlib.contextmanager
def moto_server(env: dict[str, str], log: Path, executable: str) -> Iterator[Service]:
    """moto's S3 server in its own process on 127.0.0.1."""
    port = free_port()
    command = [executable, "-H", "127.0.0.1", "-p", str(port)]
    with _service(command, env, log, f"http://127.0.0.1:{port}", "/moto-api/", 60.0) as service:
        yield service
