"""The ``hoiforge`` app: every command group registered here, nothing registered by importing a module.

hoiforge build INPUT... --out OUT [--recipe NAME|PATH]          cli/build.py
hoiforge inspect OUT ID / hoiforge validate OUT                  cli/build.py
hoiforge stats OUT / hoiforge view OUT [--host H] [--port P]     cli/report.py
hoiforge audit OUT [--stage S] [--n 100] [--split train|test] [--seed S] [--reviewer NAME] [--dropped]   cli/report.py
hoiforge models list|check|fetch                                 cli/models.py
hoiforge wear check IMAGES --labels-dir DIR | --coco FILE        cli/wear.py
hoiforge eval metrics|virtualmodel|shoemodel ...                 cli/eval.py
hoiforge train|generate virtualmodel ...                         cli/virtualmodel.py
hoiforge train|generate shoemodel ...                            cli/shoemodel.py

Exit codes: cli/output.py (one rule, shown by ``hoiforge --help``).
"""

from __future__ import annotations

import typer

from hoiforge.cli import build, report, shoemodel, virtualmodel
from hoiforge.cli.eval import eval_app
from hoiforge.cli.models import models_app
from hoiforge.cli.output import EXIT_CODES
from hoiforge.cli.wear import wear_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build, check and inspect HOI training data.", epilog=EXIT_CODES)
train_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train the generators on built shards.", epilog=EXIT_CODES)
generate_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Generate images with a trained run.", epilog=EXIT_CODES)

app.command("build")(build.build)
app.command("inspect")(build.inspect)
app.command("validate")(build.validate)
app.command("stats")(report.stats_command)
app.command("view")(report.view_command)
app.command("audit")(report.audit_command)
app.add_typer(models_app, name="models")
app.add_typer(wear_app, name="wear")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(generate_app, name="generate")
train_app.command("virtualmodel")(virtualmodel.train_virtualmodel_command)
generate_app.command("virtualmodel")(virtualmodel.generate_virtualmodel_command)
train_app.command("shoemodel")(shoemodel.train_shoemodel)
generate_app.command("shoemodel")(shoemodel.generate_shoemodel)
