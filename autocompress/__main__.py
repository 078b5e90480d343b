from autocompress.cli import app

app(prog_name="autocompress")
