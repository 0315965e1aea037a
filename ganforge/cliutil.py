"""Shared pieces of the stage CLIs: an argparse parser whose errors are one line, and flag parsers."""

from __future__ import annotations

import argparse

from ganforge.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse with runnable examples in --help and usage errors raised as UserError (one line, exit 2)."""

    def __init__(self, prog: str, description: str, examples: str):
        super().__init__(prog=f"ganforge {prog}", description=description,
                         epilog=f"examples:\n{examples}", formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise UserError(f"{message} (see ganforge {self.prog.split()[-1]} --help)")


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values
