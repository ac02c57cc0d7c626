"""ShoeModel settings checked before any network is built (core/arch_limits): a module's settings before
training, and a received RUN's records and saved model configs before ``generate`` loads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hoiforge.training.core.arch_limits import check_buildable, check_folder, check_values
from hoiforge.training.shoemodel.config import ShoeModelConfig

MODEL_FOLDERS = {"wd": ("model",), "lps1": ("model",), "lps2": ("model", "scheduler"), "sw": ("controlnet",)}


def _random_build(cfg: ShoeModelConfig, module: str):
    """The module's network as training builds it when nothing pretrained is loaded; None when it loads weights."""
    part = getattr(cfg, module)
    if module == "wd" and not part.pretrained:
        from hoiforge.training.shoemodel import wd

        return lambda: wd.build(part)
    if module == "lps1" and not part.pretrained:
        from hoiforge.training.shoemodel import lps1

        return lambda: lps1.build(part)
    if module == "lps2":
        from hoiforge.training.shoemodel import lps2

        return lambda: lps2.build(part)
    if module == "sw" and not part.base_model:
        from hoiforge.training.shoemodel import sw

        return lambda: sw.tiny_base(part.tiny_base)
    return None


def check_module(cfg: ShoeModelConfig, module: str) -> None:
    """Before training ``module``: its settings in range and its random network buildable (on meta) and bounded."""
    check_values(getattr(cfg, module).model_dump(mode="json"), module)
    build = _random_build(cfg, module)
    if build is not None:
        check_buildable(f"ShoeModel {module} settings", build)


def check_run(run: Path, records: dict[str, dict[str, Any]]) -> None:
    """Before ``generate`` loads a RUN: every record's settings and every saved model config in range."""
    for module, record in records.items():
        check_values(record.get("config") or {}, f"{run / module / 'shoemodel.json'} config")
        for sub in MODEL_FOLDERS[module]:
            if (run / module / sub).is_dir():
                check_folder(run / module / sub)
