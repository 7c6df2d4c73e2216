"""Values of options and arguments the commands share: ``TEXT`` or ``@FILE``, ``K=V`` tags, and
numbers of seconds (click callbacks)."""

from __future__ import annotations

import click

from .errors import UserError


def read_text_arg(value: str) -> str:
    """``TEXT`` or ``@FILE`` (the file's content)."""
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise UserError(f"cannot read {value[1:]}: {exc.strerror}", 2) from None
    return value


def seconds_option(_ctx, param: click.Parameter, value: float | None) -> float | None:
    """A click callback: the option's ``value`` if it is a number of seconds above 0 (``inf``:
    never); bad usage (exit 2) if not: ``--timeout -1`` ended every run at once as ``timeout``,
    ``nan`` never."""
    if value is not None and not value > 0:
        raise click.BadParameter(f"{value!r} is not a number of seconds above 0", param=param)
    return value


def finite_seconds_option(ctx, param: click.Parameter, value: float | None) -> float | None:
    """Like :func:`seconds_option`, without ``inf`` (a scorer's timeout is always a number)."""
    if value is not None and value == float("inf"):
        raise click.BadParameter(f"{value!r} is not a finite number of seconds", param=param)
    return seconds_option(ctx, param, value)


def parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise UserError(f"tag {tag!r} is not KEY=VALUE", 2)
        out[key] = value
    return out
