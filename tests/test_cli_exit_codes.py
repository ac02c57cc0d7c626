"""Every command's error paths exit with the code `hoiforge --help` documents (cli/output.py):
1 = a check ran and found problems, 2 = the command could not run as asked (one ``error:`` line)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.cli.output import CHECK_FAILED, USAGE

# (name, argv with T for a fresh empty folder): each cannot run as asked.
CANNOT_RUN = [
    ("build", ["build", "T/nope", "--out", "T/o"]),
    ("inspect", ["inspect", "T/nope", "abc"]),
    ("validate", ["validate", "T/nope"]),
    ("stats", ["stats", "T/nope"]),
    ("view", ["view", "T/nope"]),
    ("models list", ["models", "list", "--recipe", "T/nope.yaml"]),
    ("models check", ["models", "check", "--recipe", "T/nope.yaml"]),
    ("models fetch", ["models", "fetch", "no-such-model", "--to", "T"]),
    ("wear check", ["wear", "check", "T"]),
    ("eval metrics", ["eval", "metrics", "--real", "T/nope", "--fake", "T/nope2", "--no-progress"]),
    ("eval virtualmodel", ["eval", "virtualmodel", "--checkpoint", "T/nope", "--data", "T/nope", "--out", "T/r", "--no-progress"]),
    ("eval shoemodel", ["eval", "shoemodel", "--checkpoint", "T/nope", "--data", "T/nope", "--out", "T/r", "--no-progress"]),
    ("train virtualmodel", ["train", "virtualmodel", "--data", "T/nope", "--out", "T/run"]),
    ("train shoemodel", ["train", "shoemodel", "--module", "xx", "--data", "T/nope", "--config", "tiny", "--out", "T/run"]),
    (
        "generate virtualmodel",
        [
            "generate",
            "virtualmodel",
            "--checkpoint",
            "T/nope",
            "--product",
            "T/p.png",
            "--pose",
            "T/p.png",
            "--prompt",
            "x",
            "--out",
            "T/o.png",
        ],
    ),
    ("generate shoemodel", ["generate", "shoemodel", "--checkpoint", "T/nope", "--shoe", "T/s.png", "--prompt", "x", "--out", "T/g"]),
]


def _run(tmp_path, argv: list[str]):
    return CliRunner().invoke(app, [a.replace("T", str(tmp_path), 1) if a.startswith("T") else a for a in argv])


def test_help_documents_the_exit_codes():
    text = " ".join(CliRunner().invoke(app, ["--help"], terminal_width=200).output.split())
    assert "Exit codes: 0 done; 1 a check found problems" in text and "2 the command could not run as asked" in text


@pytest.mark.parametrize("argv", [c[1] for c in CANNOT_RUN], ids=[c[0] for c in CANNOT_RUN])
def test_cannot_run_is_exit_2_with_one_error_line(tmp_path, argv):
    result = _run(tmp_path, argv)
    assert result.exit_code == USAGE, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr


@pytest.mark.parametrize("argv", [["build", "--no-such-option"], ["models", "check", "--nope"], ["eval", "metrics"]])
def test_usage_errors_are_exit_2(tmp_path, argv):
    assert _run(tmp_path, argv).exit_code == USAGE


def test_a_failed_check_is_exit_1(tmp_path):
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path, ["validate", "T/empty"]).exit_code == CHECK_FAILED  # not a build: every file missing
    missing = _run(tmp_path, ["models", "check", "--recipe", "hoihuman-paper", "--weights", "T/w"])
    assert missing.exit_code == CHECK_FAILED and "missing: " in missing.stderr and "error:" not in missing.stderr


def test_error_text_is_printed_as_given(tmp_path):
    weird = tmp_path / "[bold]x[/]"
    result = CliRunner().invoke(app, ["stats", str(weird)])
    assert result.exit_code == USAGE and f"error: {weird}: no manifest.parquet" in result.stderr
