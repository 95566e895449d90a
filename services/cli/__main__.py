"""`python -m latfarm.services.cli`: the `latfarm` command."""

from latfarm.services.cli import app

app()
