#!/usr/bin/env python3
"""Run aibot from a clone: `python3 run.py [flags]` is the `aibot` command
(aibot/cli.py; `python3 run.py --help` lists the flags) that also sets itself up.

The flags are read first. Only when an import fails (a fresh clone, or `--demo`
before its extra is installed) does run.py create `.venv` beside it, install aibot
into it (with the `demo` extra for `--demo`; versions from constraints.txt), and
run again inside it. On a set-up clone it costs nothing. Only the standard library
is imported here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aibot.cli import MissingDependency

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
CONSTRAINTS = ROOT / "constraints.txt"
# Set in the environment of the run after an install: if an import still fails
# there, say so instead of installing again and again.
INSTALLED = "AIBOT_RUN_PY_INSTALLED"


def main(argv: Sequence[str]) -> int:
    # An older Python runs this file first: a sentence, not a SyntaxError further on.
    if sys.version_info < (3, 11):  # noqa: UP036
        print(f"aibot needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
        return 2
    from aibot.cli import MissingDependency, run

    try:
        return run(argv, prog="run.py", home=ROOT)
    except MissingDependency as missing:
        return set_up(missing, argv)


def set_up(missing: MissingDependency, argv: Sequence[str]) -> int:
    """Install what is missing into `.venv` and run `argv` again there."""
    python = VENV / "bin" / "python"
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    if not inside and python.exists():  # set up before: run there (it installs what it lacks)
        restart(python, argv)
    target = f"{ROOT}[{missing.extra}]" if missing.extra else str(ROOT)
    if os.environ.get(INSTALLED):
        print(
            f"aibot: {missing} even after installing it; try: {python} -m pip install -e '{target}'"
        )
        return 2
    try:
        if not python.exists() and not create_venv():
            return 1
        print(
            f"aibot: installing {missing.requirement} and its dependencies into {VENV} "
            "(once; about a minute) ...",
            flush=True,
        )
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        if CONSTRAINTS.exists():
            pip += ["--constraint", str(CONSTRAINTS)]
        subprocess.run([*pip, "--editable", target], check=True)
    except subprocess.CalledProcessError:
        print("aibot: setting up .venv failed (pip's message is above).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    os.environ[INSTALLED] = "1"
    restart(python, argv)
    return 1  # not reached: restart replaces this process


def create_venv() -> bool:
    """`python3 -m venv .venv`; a half-made one is removed, so the next run tries again."""
    print(f"aibot: first run: creating {VENV} ...", flush=True)
    try:
        made = subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode == 0
    finally:  # also after Ctrl-C
        if not (VENV / "bin" / "pip").exists():
            shutil.rmtree(VENV, ignore_errors=True)
    if not made:
        print(
            "aibot: could not create .venv (on Debian or Ubuntu: apt-get install python3-venv)",
            file=sys.stderr,
        )
    return made


def restart(python: Path, argv: Sequence[str]) -> None:
    os.execv(python, [str(python), str(ROOT / "run.py"), *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
