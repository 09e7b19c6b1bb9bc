"""The exception root of the harness.

``UserError`` is a mistake the user can fix (unknown name, bad number, missing data, malformed
file): the CLI prints its message on one line and exits with code 2. Anything else is a bug or a
failure of a run, recorded as such.
"""

from __future__ import annotations

from pathlib import Path


class BenchError(Exception):
    """Root of every error the harness raises on purpose."""


class UserError(BenchError, ValueError):
    """A mistake in the user's input; the message says what is wrong and how to fix it."""


class DataError(UserError):
    """A dataset is missing or its content is not what it should be."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> UserError:
    """The error for a name that is not registered, listing the valid ones."""
    return UserError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


def output_path(path: str | Path, what: str = "output") -> Path:
    """``path`` checked as a file the command may write (its folder created), or ``UserError``
    naming it: before the work that produces the output, so that none of it is lost."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a folder; give a file name")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"cannot write {what} {str(path)!r}: {str(blocking)!r} is a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder of {what} {str(path)!r}: "
                        f"{e.strerror or e}") from None
    return path


def write_output(path: str | Path, text: str, what: str = "output") -> Path:
    """Write ``text`` to ``path`` or raise ``UserError`` saying why it cannot be written."""
    path = output_path(path, what)
    try:
        path.write_text(text)
    except OSError as e:
        raise UserError(f"cannot write {what} {str(path)!r}: {e.strerror or e}; give --out a "
                        "path you can write") from None
    return path
