"""The commands of the `autocompress` CLI, one module each (autocompress/cli.py lists them)."""
