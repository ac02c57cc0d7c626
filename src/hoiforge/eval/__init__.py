"""Evaluation: the papers' tables from a trained run and a build's test split (docs/eval.md).

The metrics themselves (FID, KID, CLIP, AP/AR, OER, segmentation scores) live in
``hoiforge.metrics``; this package holds the commands that generate with a run, score and write
the tables.

| module | owns |
|---|---|
| ``scoring`` | generated folder vs a test split's conditions: Table 1/3/5 numbers and rows |
| ``paper_tables`` / ``tables`` | the published numbers as data; markdown/CSV/JSON writers, ``--compare`` |
| ``held_out`` / ``runs`` | a build's held-out test split and the checks on it; run kinds, the report folder, progress |
| ``virtualmodel_eval`` / ``shoemodel_eval`` | ``eval virtualmodel`` / ``eval shoemodel``: generate with a trained run, score, write the tables |
| ``cli`` | the ``hoiforge eval`` typer app |
"""
