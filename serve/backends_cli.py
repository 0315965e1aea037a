"""`ganforge backends`: every backend, what it loads, and whether it can run here (and why not)."""

from __future__ import annotations

from ganforge.cliutil import Parser


def main(argv: list[str]) -> int:
    Parser("backends", "List inference backends and whether they are available here.",
           "  ganforge backends\n").parse_args(argv)
    from .runners import backends

    for name, backend in backends().items():
        why_not = backend.availability()
        state = "available" if why_not is None else f"not available: {why_not}"
        print(f"{name:<14} loads {backend.model_kind:<10} precisions {','.join(backend.precisions):<15} {state}")
    return 0
