"""Which settings file a run reads, and what to say about it.

`--env-file PATH` names a file that must exist: a typo is an error naming it, not
a bot that quietly starts without its settings. Without the flag, `.env.multi`
is looked for in the working folder, then beside `run.py` (so
`/opt/aibot/.venv/bin/python /opt/aibot/run.py --check` finds
`/opt/aibot/.env.multi` from any folder); when neither has one, the settings
come from the environment alone (systemd's `EnvironmentFile=` works that way).

Standard library only: the command line imports it before any dependency.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_NAME",
    "SettingsFile",
    "SettingsFileError",
    "find_settings_file",
    "load_env",
]

DEFAULT_NAME = ".env.multi"


class SettingsFileError(Exception):
    """The file named with `--env-file` cannot be read; the message says which."""


@dataclass(frozen=True, slots=True)
class SettingsFile:
    """The outcome of the search: `path` is the file to read (None: none found,
    the environment alone), `looked_in` the folders searched for the default."""

    path: Path | None
    looked_in: tuple[Path, ...] = ()

    def describe(self) -> str:
        """One line for `--check` and the error messages."""
        if self.path is not None:
            return f"settings from {self.path} (the environment wins over it)"
        where = " or ".join(str(folder) for folder in self.looked_in)
        return f"no {DEFAULT_NAME} in {where}: settings from the environment only"


def find_settings_file(
    named: str | None, *, beside: Path | None = None, cwd: Path | None = None
) -> SettingsFile:
    """The settings file for `--env-file named` (None: the default `.env.multi`,
    looked for in `cwd` (the working folder), then in `beside` (run.py's folder)).

    Raises `SettingsFileError` when `named` does not exist or is not a file."""
    cwd = cwd or Path.cwd()
    if named is not None:
        path = cwd / Path(named).expanduser()
        if not path.exists():
            raise SettingsFileError(f"settings file {named} not found (--env-file)")
        return SettingsFile(_readable(path, named))
    folders = tuple(dict.fromkeys(f.resolve() for f in (cwd, beside) if f is not None))
    for folder in folders:
        path = folder / DEFAULT_NAME
        if path.exists():
            return SettingsFile(_readable(path, str(path)), folders)
    return SettingsFile(None, folders)


def _readable(path: Path, shown: str) -> Path:
    if not path.is_file():
        raise SettingsFileError(f"settings file {shown} is not a file")
    if not os.access(path, os.R_OK):
        raise SettingsFileError(f"settings file {shown} cannot be read (permission denied)")
    return path.resolve()


def load_env(path: str | os.PathLike[str] | None = ".env.multi") -> dict[str, str]:
    """The process environment over the values of a dotenv file (if it exists)."""
    from dotenv import dotenv_values  # a dependency: imported only once installed

    values: dict[str, str] = {}
    if path is not None and Path(path).is_file():
        values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    values.update(os.environ)
    return values
