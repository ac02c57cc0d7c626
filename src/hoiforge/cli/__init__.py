"""The ``hoiforge`` command line (entry point ``hoiforge = "hoiforge.cli:app"``).

| module | owns |
|---|---|
| ``main`` | the app: every command and group registered in one place |
| ``output`` | the exit-code rule, ``fail`` (every error line), ``warn``/``say``, the training logs on stderr |
| ``build`` | ``build``, ``inspect``, ``validate`` |
| ``report`` | ``stats``, ``view`` |
| ``models`` | ``models list|check|fetch`` |
| ``wear`` | ``wear check`` |
| ``eval`` | ``eval metrics|virtualmodel|shoemodel`` |
| ``virtualmodel`` / ``shoemodel`` | ``train`` and ``generate`` of each model |

Commands do the arguments and the printing; the work is in the packages below (they never import typer).
"""

from hoiforge.cli.main import app

__all__ = ["app"]
