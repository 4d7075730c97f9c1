"""One exception type for bad user input, reported without a traceback."""

from __future__ import annotations

from os import PathLike


class InputError(Exception):
    """Bad input that the user must fix: names the file (or key) and the problem.

    Parameters
    ----------
    source : str or PathLike
        The file, config key or table row at fault.
    problem : str
        What is wrong, in words a user can act on.
    """

    def __init__(self, source: str | PathLike, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
