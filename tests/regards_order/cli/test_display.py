"""What `regards-order download` shows while it runs, seen as a user sees it: in a real
terminal (tmux), and with stdout and stderr sent to files as cron or CI would.

The order is slow on purpose (each file throttled by the simulator, one file a suborder, two
suborders at a time), so the run lasts seconds whatever the machine; the tests wait on what
the screen shows, with generous deadlines, and assert nothing about time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regards_order.simulator import Scenario, Simulator
from tests.helpers.cli import CLI, download_args
from tests.helpers.scenarios import PASSWORD, USER, scenario
from tests.helpers.waiting import wait_until

Start = Callable[[Scenario], Simulator]

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (make tools installs it)"
)

ORDER_ID = 41
FILES = 8
#: Each file takes 1.5 s at least: the run lasts 6 s or more, the order RUNNING most of it.
SLOW_ORDER = scenario(
    [
        {
            "id": ORDER_ID,
            "owner": USER,
            "files": [
                {"filename": f"slow-{i}.bin", "size": 150_000, "faults": [
                    {"kind": "slow", "bytes_per_second": 100_000, "times": None}]}
                for i in range(FILES)
            ],
        }
    ],
    suborder_max_files=1,
)  # fmt: skip
DEADLINE = 90.0

LIVE_COUNT = re.compile(r"(\d+)/(\d+) files verified")
SGR = re.compile(r"\x1b\[[0-9;]*m")
#: What an escape sequence leaves on screen when a terminal did not take it.
RAW_SEQUENCE = re.compile(r"\x1b|\[\??\d+(;\d+)*[ABCDHJKlhm]")
FINAL = f"order {ORDER_ID} delivered: {FILES} files verified ({FILES} downloaded, 0 already there)"


class Pane:
    """One command in a detached tmux session of a private tmux server."""

    def __init__(self) -> None:
        self.socket = f"regards-test-{uuid.uuid4().hex[:12]}"

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True, text=True, env=env, check=True, timeout=30,
        )  # fmt: skip
        return done.stdout

    def start(
        self, command: list[str], env: dict[str, str], *, trap_interrupt: bool = False
    ) -> None:
        # The shell stays after the command, so that its last screen and exit code can be read.
        shell = f'{shlex.join(command)}; echo "[exit $?]"; exec sleep 3600'
        if trap_interrupt:  # Ctrl-C reaches the command; the shell goes on to say its exit
            shell = f"trap : INT; {shell}"
        self.tmux("new-session", "-d", "-s", "test", "-x", "120", "-y", "30", shell, env=env)

    @property
    def target(self) -> str:
        return "test"

    def cursor_shown(self) -> bool:
        return (
            self.tmux("display-message", "-p", "-t", self.target, "#{cursor_flag}").strip() == "1"
        )

    def screen(self) -> str:
        """The visible screen as text (tmux has interpreted every escape sequence)."""
        return self.tmux("capture-pane", "-p")

    def history(self, *, escapes: bool = False) -> str:
        """Everything the pane showed, scrollback included, wrapped lines joined; with
        `escapes`, its attributes as the SGR sequences tmux writes for them."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", *(["-e"] if escapes else []))

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def pane() -> Iterator[Pane]:
    started = Pane()
    yield started
    started.kill()


def environment(prefect_api: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGARDS_")}
    return {**env, "PREFECT_API_URL": prefect_api, "REGARDS_PASSWORD": PASSWORD, **extra}


def counts(text: str) -> tuple[int, int] | None:
    found = LIVE_COUNT.search(text)
    return (int(found[1]), int(found[2])) if found else None


def test_live_display_in_a_terminal(
    start_simulator: Start, tmp_path: Path, prefect_api: str, pane: Pane
) -> None:
    sim = start_simulator(SLOW_ORDER)
    pane.start([CLI, *download_args(sim, ORDER_ID, tmp_path / "data")], environment(prefect_api))

    # Every capture until the end is looked at: what the live view showed is kept, whatever
    # the order in which the machine's load lets the files go.
    row = re.compile(r"slow-\d\.bin\s+\S+ [kM]?B/150\.0 kB\s+\S+ [kM]?B/s")
    partial_counts: set[int] = set()
    with_a_row: list[str] = []

    def look() -> re.Match[str] | None:
        screen = pane.screen()
        seen = counts(screen)
        if seen and seen[0] < seen[1]:
            partial_counts.add(seen[0])
            if row.search(screen) and not with_a_row:
                with_a_row.append(screen)
        return re.search(r"\[exit (\d+)\]", screen)

    ended = wait_until(look, "the end", timeout=DEADLINE * 2)
    assert with_a_row, "no capture showed a transfer's row under the bar"
    assert f"order {ORDER_ID} " in with_a_row[0] and "━" in with_a_row[0]  # order line, bar
    assert len(partial_counts) >= 2, partial_counts  # the bar advanced
    assert ended[1] == "0"
    final = pane.history()
    assert FINAL in final.splitlines()
    # The live view was transient: no bar, no transfer row left, the log lines above intact.
    assert "━" not in final and "files verified," not in final
    assert "Finished in state Completed()" in final
    assert not RAW_SEQUENCE.search(final)
    # Colours are all the escapes there are: nothing else is left in the lines.
    coloured = pane.history(escapes=True)
    assert "\x1b" in coloured  # the capture does carry the attributes
    assert "\x1b" not in SGR.sub("", coloured)


def test_periodic_lines_without_a_terminal(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    sim = start_simulator(SLOW_ORDER)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = environment(prefect_api, REGARDS_PROGRESS_EVERY="0.3")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        done = subprocess.run(
            [CLI, *download_args(sim, ORDER_ID, tmp_path / "data", "--json")],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, timeout=180,
            check=False,
        )  # fmt: skip
    assert done.returncode == 0, err.read_text()
    written, logged = out.read_bytes(), err.read_bytes()
    assert b"\x1b" not in written and b"\x1b" not in logged
    assert json.loads(written)["ok"] is True
    lines = logged.decode().splitlines()
    periodic = [
        match
        for line in lines
        if (
            match := re.fullmatch(
                rf"order {ORDER_ID} RUNNING: (\d+)/(\d+) files, "
                r"[\d.]+ [kMG]?B/[\d.]+ [kMG]?B, [\d.]+ [kMG]?B/s",
                line,
            )
        )
    ]
    assert any(int(m[1]) < int(m[2]) for m in periodic), lines
    assert "━" not in logged.decode()
    assert lines[-1] == FINAL


def test_ctrl_c_while_the_display_runs_leaves_a_clean_terminal_and_says_what_is_left(
    start_simulator: Start, tmp_path: Path, prefect_api: str, pane: Pane
) -> None:
    sim = start_simulator(SLOW_ORDER)
    command = [CLI, *download_args(sim, ORDER_ID, tmp_path / "data")]
    # The shell keeps going after Ctrl-C (a trap), to print the exit code the CLI ended with.
    pane.start(command, environment(prefect_api), trap_interrupt=True)
    row = re.compile(r"slow-\d\.bin\s+\S+ [kM]?B/150\.0 kB")
    wait_until(lambda: row.search(pane.screen()), "a transfer in flight", timeout=DEADLINE)
    pane.tmux("send-keys", "-t", pane.target, "C-c")
    ended = wait_until(
        lambda: re.search(r"\[exit (\d+)\]", pane.screen()), "the end", timeout=DEADLINE
    )
    assert ended[1] == "130"  # 128 + SIGINT, after a clean stop
    final = pane.history()
    lines = final.splitlines()
    # Said above the view, not through it, and kept once the view is gone.
    assert "regards-order: SIGINT: stopping cleanly; send it again to quit at once" in lines
    # What is left: the last line names the order and how many files were not delivered.
    (last,) = [line for line in lines if line.startswith(f"regards-order: order {ORDER_ID} ")]
    assert last.startswith(f"regards-order: order {ORDER_ID} not delivered: ")
    assert re.search(r"interrupted with \d files not delivered", final)
    assert "━" not in final and "files verified," not in final  # the view is gone
    assert not RAW_SEQUENCE.search(final) and "Traceback" not in final
    assert not list((tmp_path / "data").rglob("*.regards-partial"))  # nothing half-written


def test_a_second_ctrl_c_quits_at_once_and_gives_the_cursor_back(
    start_simulator: Start, tmp_path: Path, prefect_api: str, pane: Pane
) -> None:
    # The file stalls for 15 s: the clean stop the first Ctrl-C asks for cannot end before
    # the second one comes.
    stalled = {"filename": "stalled.bin", "size": 150_000, "faults": [
        {"kind": "stall", "at_byte": 20_000, "seconds": 15, "times": None}]}  # fmt: skip
    sim = start_simulator(scenario([{"id": ORDER_ID, "owner": USER, "files": [stalled]}]))
    command = [CLI, *download_args(sim, ORDER_ID, tmp_path / "data")]
    pane.start(command, environment(prefect_api), trap_interrupt=True)
    row = re.compile(r"stalled\.bin\s+\S+ [kM]?B/150\.0 kB")
    wait_until(lambda: row.search(pane.screen()), "the transfer in flight", timeout=DEADLINE)
    assert pane.cursor_shown() is False  # the live view hides it while it runs
    pane.tmux("send-keys", "-t", pane.target, "C-c")
    wait_until(lambda: "SIGINT: stopping cleanly" in pane.history(), "the first one taken")
    pane.tmux("send-keys", "-t", pane.target, "C-c")
    ended = wait_until(
        lambda: re.search(r"\[exit (\d+)\]", pane.screen()), "the end", timeout=DEADLINE
    )
    assert ended[1] == "130"
    final = pane.history()
    assert f"order {ORDER_ID} not delivered" not in final  # it did quit at once
    # The view is off the screen, the cursor shown again, nothing raw left.
    assert pane.cursor_shown() is True
    assert "━" not in final and "files verified," not in final
    assert not RAW_SEQUENCE.search(final) and "Traceback" not in final
