"""The exception root of the harness.

``UserError`` is a mistake the user can fix (unknown name, bad number, missing data, malformed
file): the CLI prints its message on one line and exits with code 2. Anything else is a bug or a
failure of a run, recorded as such.
"""

from __future__ import annotations


class BenchError(Exception):
    """Root of every error the harness raises on purpose."""


class UserError(BenchError, ValueError):
    """A mistake in the user's input; the message says what is wrong and how to fix it."""


class DataError(UserError):
    """A dataset is missing or its content is not what it should be."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> UserError:
    """The error for a name that is not registered, listing the valid ones."""
    return UserError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")
