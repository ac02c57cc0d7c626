"""``hoiforge models``: list, check and fetch the weights of the paper-grade backends.

Mounted by cli/main.py. Every command takes ``--weights DIR`` (default $HOIFORGE_WEIGHTS, else
~/.cache/hoiforge/weights); errors are one line on stderr (exit 2), ``check`` exits 1 when weights
are missing or corrupt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hoiforge.cli.output import check_failed, fail
from hoiforge.errors import HoiforgeError
from hoiforge.models.weights import registry as W

models_app = typer.Typer(name="models", help="Model weights: what each recipe needs, what is present, fetch.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", "--to", help=f"weights root (default ${W.WEIGHTS_ENV}, else {W.DEFAULT_ROOT})", show_default=False),
]
RecipeOpt = Annotated[list[str] | None, typer.Option("--recipe", "-r", help="bundled recipe name or YAML path (repeatable)")]


def _recipes(names: list[str] | None):
    from hoiforge.pipeline.recipe import bundled_recipes, load_recipe

    return [load_recipe(n) for n in (names or sorted(bundled_recipes()))]


def _required(recipe) -> list[W.WeightSpec]:
    from hoiforge.pipeline.weights_plan import required_for

    return required_for(recipe)


def _uses(s: W.WeightSpec) -> str:
    uses = ", ".join(f"{u.stage}/{u.backend}" + (f" ({u.option})" if u.option else "") for u in s.needed_by)
    return uses if s.default else f"{uses} (alternative)"


@models_app.command("list")
def list_(recipe: RecipeOpt = None, weights: WeightsOpt = None) -> None:
    """Every registry entry: which recipes and backends need it, whether it is present, and where."""
    try:
        root = W.weights_root(weights)
        recipes = _recipes(recipe)
        used_by = {s.name: [r.name for r in recipes if s in _required(r)] for s in W.REGISTRY.values()}
        table = Table(title=escape(f"weights root: {root}"))
        for col in ("name", "needed by", "recipes", "size", "licence", "present", "source"):
            table.add_column(col, overflow="fold")
        for s in W.REGISTRY.values():
            if recipe and not used_by[s.name]:
                continue
            where = W.locate(s, root)
            cells = (s.name, _uses(s), ", ".join(used_by[s.name]) or "-", f"~{s.size_mb} MB", s.licence,
                     str(where) if where else "missing", s.source)  # fmt: skip
            table.add_row(*map(escape, cells))
        out.print(table)
        for r in recipes:
            names = [s.name for s in _required(r)]
            out.print(
                f"recipe {r.name}: {', '.join(names) if names else 'no weights (embedded backends only)'}", markup=False, highlight=False
            )
    except HoiforgeError as e:
        fail(str(e))


@models_app.command("check")
def check(
    recipe: RecipeOpt = None,
    weights: WeightsOpt = None,
    verify: Annotated[bool, typer.Option("--verify", help="also hash the files against the publisher's or fetch's sha256")] = False,
) -> None:
    """Exit 1 with the list of missing weights (and the command that fetches them) for the recipe(s)."""
    try:
        root = W.weights_root(weights)
        recipes = _recipes(recipe)
        needed = list({s.name: s for r in recipes for s in _required(r)}.values())
        missing = [s for s in needed if W.locate(s, root) is None]
        problems = []
        if verify:
            from hoiforge.models.weights.fetch import verify_present

            for s in needed:
                if s not in missing:
                    problems += verify_present(s, W.locate(s, root))
    except HoiforgeError as e:
        fail(str(e))
    for s in missing:
        absent = s.missing_in(s.local_dir(root))
        err.print(f"missing: {s.name} (~{s.size_mb} MB, for {_uses(s)}): "
                  f"{', '.join(absent)} in {s.local_dir(root)}", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    for p in problems:
        err.print(f"corrupt: {p}", markup=False, highlight=False, soft_wrap=True)
    if missing or problems:
        bad = [s.name for s in missing] + sorted({p.split("/")[0] for p in problems})
        err.print(f"get them with: {W.fetch_command(dict.fromkeys(bad), root)}", markup=False, highlight=False, soft_wrap=True)
        check_failed()
    names = ", ".join(r.name for r in recipes)
    out.print(f"ok: all {len(needed)} weights for {names} present in {root}", markup=False, highlight=False)


@models_app.command("fetch")
def fetch(
    names: Annotated[list[str] | None, typer.Argument(help="registry entries (see `hoiforge models list`)")] = None,
    recipe: RecipeOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Download entries (or everything a recipe needs) with resume and checksum verification."""
    from hoiforge.models.weights.fetch import fetch as fetch_one

    try:
        root = W.weights_root(weights)
        wanted = [W.spec(n) for n in names or []]
        if recipe:
            wanted += [s for r in _recipes(recipe) for s in _required(r)]
        if not wanted:
            raise HoiforgeError("name the weights to fetch, or give --recipe; `hoiforge models list` shows them")
        for s in dict.fromkeys(wanted):
            folder = fetch_one(s, root, log=lambda msg: err.print(msg, markup=False, highlight=False, soft_wrap=True))
            out.print(f"{s.name}: ok in {folder}", markup=False, highlight=False)
    except HoiforgeError as e:
        fail(str(e))
