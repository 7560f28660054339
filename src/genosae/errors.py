"""The one error type users see: which file, which record, what to fix."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad user input: names the file, the record (line, record id or config key) and the fix.

    ``str(err)`` is a single line suitable for printing by the CLI without a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        record: str | int | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.record = record
        self.message = message
        where = ""
        if self.path is not None:
            where = self.path
            if record is not None:
                where += f", {record if isinstance(record, str) else f'line {record}'}"
            where += ": "
        elif record is not None:
            where = f"{record}: "
        super().__init__(f"{where}{message}")
