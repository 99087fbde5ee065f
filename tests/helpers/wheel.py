"""The project as a user installs it: the wheel built from this checkout, in a fresh virtual
environment that has nothing else of the checkout (the locked dependencies, then the wheel)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is needed (make test installs it into .tools/)"
    return found


def _run(*argv: str, cwd: Path = REPO) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def install_wheel(folder: Path) -> InstalledWheel:
    """Build the wheel into `folder` and install it in a new virtual environment there."""
    uv = _uv()
    _run(uv, "build", "--wheel", "--out-dir", str(folder), "-q")
    (wheel,) = folder.glob("regards_order-*.whl")
    locked = folder / "requirements.txt"
    locked.write_text(
        _run(uv, "export", "--frozen", "--no-dev", "--all-extras", "--no-emit-project", "-q")
    )
    venv = folder / "venv"
    _run(uv, "venv", "-q", str(venv), "--python", shutil.which("python3") or "python3")
    python = str(venv / "bin" / "python")
    _run(uv, "pip", "install", "-q", "--python", python, "--compile-bytecode", "-r", str(locked))
    _run(uv, "pip", "install", "-q", "--python", python, "--no-deps", str(wheel))
    return InstalledWheel(wheel=wheel, venv=venv)
