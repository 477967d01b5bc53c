"""Check what users install: the built wheel, in a fresh virtual environment.

Builds the wheel, installs it (and its dependencies from the package index)
into a new venv, then, from outside the checkout:

- imports trio_ws from the venv, not from the source tree, with the C
  accelerator built into the wheel;
- runs examples/demo.py against the installed package;
- runs ``pyright --verifytypes trio_ws``: every public name fully typed.

Usage: ``python tools/check_dist.py`` (``nox -s build`` and ``.ci/run`` call it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    print("+", " ".join(str(arg) for arg in args), flush=True)
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="trio_ws-dist-") as tmp:
        work = Path(tmp)
        run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            work / "dist",
            ROOT,
            cwd=work,
        )
        [wheel] = (work / "dist").glob("trio_ws-*.whl")
        venv = work / "venv"
        run(sys.executable, "-m", "venv", venv, cwd=work)
        python = venv / "bin" / "python"
        run(python, "-m", "pip", "install", "-q", wheel, "pyright", cwd=work)

        where = run(
            python,
            "-c",
            "import trio_ws, trio_ws._speedups, trio_ws.protocol.frames as f;"
            "print(trio_ws.__file__, f.HAVE_SPEEDUPS)",
            cwd=work,
        ).split()
        if not where[0].startswith(str(venv)) or where[1] != "True":
            sys.exit(f"the installed wheel is not what was imported: {where}")

        demo = run(python, ROOT / "examples" / "demo.py", cwd=work)
        if "client: closed with code 1000" not in demo:
            sys.exit(f"the demo did not close cleanly:\n{demo}")

        env = {
            **os.environ,
            "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        }
        report = run(
            venv / "bin" / "pyright",
            "--verifytypes",
            "trio_ws",
            "--ignoreexternal",
            cwd=work,
            env=env,
        )
        if "Type completeness score: 100%" not in report:
            sys.exit(f"the public API is not fully typed:\n{report}")
        print(f"ok: {wheel.name} installs, runs the demo, and is fully typed")


if __name__ == "__main__":
    main()
