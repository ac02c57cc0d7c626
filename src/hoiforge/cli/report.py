"""``hoiforge stats OUT``, ``hoiforge view OUT`` and ``hoiforge audit OUT``: plain functions cli/main.py registers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from hoiforge.cli.output import fail, warn


def _require_build(out: Path) -> None:
    if not (out / "manifest.parquet").exists():
        fail(f"{out}: no manifest.parquet (not a finished build)")


def _serve(server) -> None:
    """Serve until Ctrl-C, then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def stats_command(
    out: Annotated[Path, typer.Argument(help="output directory of a build")],
    as_json: Annotated[bool, typer.Option("--json", help="also print the figures as JSON on stdout")] = False,
) -> None:
    """Write OUT/report/index.html (self-contained) and OUT/report/figures.json from the manifest."""
    from hoiforge.errors import HoiforgeError
    from hoiforge.pipeline.outlock import exclusive
    from hoiforge.report.html import build_report

    _require_build(out)
    t0 = time.perf_counter()
    try:
        with exclusive(out, "stats"):  # never a report of a half-written build, never two writers of OUT/report
            result = build_report(out)
    except HoiforgeError as e:
        fail(str(e))
    took = time.perf_counter() - t0
    totals = result["figures"]["totals"]
    if as_json:
        sys.stdout.write(json.dumps(result["figures"]) + "\n")
    typer.echo(
        f"{totals['inputs']} inputs: {totals['kept']} kept, {totals['dropped']} dropped, {totals['failed']} failed\n"
        f"report  {result['html']}\nfigures {result['json']}\n"
        f"in {took:.2f} s (figures {result['seconds']['figures']:.2f} s, page {result['seconds']['render']:.2f} s)",
        err=as_json,
    )
    from hoiforge.report.audit_section import summary_line

    for stage, summary in result["figures"].get("audit", {}).items():
        typer.echo(summary_line(stage, summary), err=as_json)


def view_command(
    out: Annotated[Path, typer.Argument(help="output directory of a build")],
    host: Annotated[str, typer.Option("--host", help="address to bind; 0.0.0.0 exposes the data to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0 = any free port)")] = 8765,
    remote_sources: Annotated[
        bool,
        typer.Option("--remote-sources", help="also read dropped/failed rows' sources from s3://, gs://, ... with your credentials"),
    ] = False,
) -> None:
    """Browse samples in a local web page: filters, paging, pose/mask/edge/text overlays."""
    from hoiforge.report.viewer import LOOPBACK, make_server

    _require_build(out)
    if host not in LOOPBACK:
        warn(f"binding {host}: anyone who can reach this machine can read every image and annotation of {out} (no authentication).")
    server = make_server(out, host, port, remote_sources=remote_sources)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    typer.echo(f"hoiforge view: http://{shown}:{server.server_address[1]}/  ({out}; Ctrl-C to stop)")
    _serve(server)


def audit_command(
    out: Annotated[Path, typer.Argument(help="output directory of a build")],
    stage: Annotated[str, typer.Option("--stage", help="products | person | pose | cleanup | caption | shoes | wear_labels")] = "products",
    n: Annotated[int, typer.Option("--n", help="samples to draw (kept; as many again of the stage's drops with --dropped)")] = 100,
    split: Annotated[str | None, typer.Option("--split", help="train | test: only kept samples of this split")] = None,
    seed: Annotated[int, typer.Option("--seed", help="the draw's seed; the answers go to OUT/audit/<stage>-<seed>.jsonl")] = 0,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="your name in the answer file (default: your login name)")] = None,
    dropped: Annotated[bool, typer.Option("--dropped", help="also audit the samples the stage dropped (were the drops right?)")] = False,
    port: Annotated[int, typer.Option("--port", help="TCP port on 127.0.0.1 (0 = any free port)")] = 8765,
) -> None:
    """Review a seeded sample of a stage's annotations in the viewer: keys c / w / s mark correct / wrong / skip."""
    from hoiforge.errors import HoiforgeError
    from hoiforge.report.audit import default_reviewer
    from hoiforge.report.audit_session import AuditSession
    from hoiforge.report.viewer import make_server

    _require_build(out)
    if split not in (None, "train", "test"):
        fail("--split must be train or test")
    try:
        session = AuditSession(out, stage, n=n, seed=seed, split=split, dropped=dropped, reviewer=reviewer or default_reviewer())
    except HoiforgeError as e:
        fail(str(e))
    server = make_server(out, "127.0.0.1", port, audit=session)
    doc = session.sample
    typer.echo(
        f"hoiforge audit: http://127.0.0.1:{server.server_address[1]}/audit  ({stage}, {len(doc['items'])} samples, seed {seed}, "
        f"reviewer {session.store.reviewer}; answers -> {session.store.path}; Ctrl-C to stop)"
    )
    _serve(server)
