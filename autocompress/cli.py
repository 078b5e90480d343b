"""The `autocompress` command: parse, validate, call the library; user errors are one line and exit 2.

One module per command in autocompress/commands/ (what they share: commands/common.py); this one only lists them.
"""

from __future__ import annotations

import typer

from autocompress.commands.apply import apply
from autocompress.commands.devices import devices
from autocompress.commands.export import export
from autocompress.commands.report import report
from autocompress.commands.search import search
from autocompress.commands.sensitivity import sensitivity_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Search, per device, how to make a trained PyTorch model smaller and faster while keeping its accuracy.",
)
app.command()(report)
app.command()(apply)
app.command()(search)
app.command()(export)
app.command(name="sensitivity")(sensitivity_command)
app.command()(devices)
