from hoiforge.report.cli import app

app()
