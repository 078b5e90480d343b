"""`autocompress devices`: the hardware profiles, and whether each is usable here (and if not, why)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from autocompress.commands.common import fail
from autocompress.errors import AutocompressError


def devices(
    probe_remote: Annotated[bool, typer.Option(help="connect to remote devices to check them")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list, for scripts")] = False,
) -> None:
    """List the hardware profiles: runtime, precisions, host, and whether each is usable here (and if not, why)."""
    try:
        from autocompress.hardware import all_profiles
        from autocompress.hardware.availability import availability

        rows = []
        for profile in all_profiles().values():
            checked = not (profile.is_remote and not probe_remote)
            problem = availability(profile) if checked else None
            rows.append(
                {
                    "name": profile.name,
                    "aliases": profile.aliases,
                    "runtime": profile.record.name,
                    "precisions": profile.precisions,
                    "host": profile.host,
                    "usable": ("yes" if problem is None else "no") if checked else "unchecked",
                    "why_not": problem,
                    "verified_on_hardware": profile.verified_on_hardware,
                }
            )
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        _devices_table(rows)
    except AutocompressError as error:
        raise fail(str(error)) from None


def _devices_table(rows: list[dict]) -> None:
    """Names and hosts are never cut: they are what a user types next (in a pipe or a log file too)."""
    table = Table("name", "runtime", "precisions", "host", "usable here", "notes", show_lines=False)
    for column, key in ((table.columns[0], "name"), (table.columns[3], "host")):
        column.no_wrap = True
        column.min_width = max(len(row[key]) for row in rows)
    for row in rows:
        precisions = sorted({p for choices in row["precisions"].values() for p in choices})
        notes = [row["why_not"] or ""]
        if not row["verified_on_hardware"]:
            notes.append("not verified on hardware")
        if row["aliases"]:
            notes.append(f"aliases: {', '.join(row['aliases'])}")
        table.add_row(row["name"], row["runtime"], ", ".join(precisions), row["host"], row["usable"],
                      "; ".join(note for note in notes if note))  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 200).print(table)
