"""The one exception type for mistakes a user can fix (bad flags, bad files).

The CLI prints it as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``: how a failure is shown in a table row (bench, --backend auto)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
