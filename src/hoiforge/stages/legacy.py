"""The recipe form before backend slots (``backend:``, ``options:``, ``<slot>_options:``, a stage's old
option keys), migrated to slots with a RecipeDeprecation warning until hoiforge 0.3."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from hoiforge.models import registry

if TYPE_CHECKING:
    from hoiforge.stages.params import StageParams


class RecipeDeprecation(FutureWarning):
    """An old recipe form that still works for one release; the message says how to write it now."""


def _accepts(task: str, backend: str | None, option: str) -> bool:
    try:
        return option in registry.backend(task, backend or "").options.model_fields
    except KeyError:
        return True  # an unknown backend is reported by the slot's own validation


def migrate_old_form(cls: type[StageParams], data: Any) -> Any:
    """``data`` with every old-form key moved into its slot, and one RecipeDeprecation naming them."""
    slots = cls.slots()
    if not isinstance(data, dict) or not slots:
        return data
    first = next(iter(slots))
    legacy = {"backend": first, "options": first, **{f"{s}_options": s for s in slots}, **cls._legacy_options}
    data, moved = dict(data), []
    for old, target in legacy.items():
        if old not in data or old in cls.model_fields:
            continue
        value = data.pop(old)
        current = data.get(target)
        cfg = {"backend": current} if isinstance(current, str) else dict(current or {})
        if old == "backend":
            cfg["backend"] = value
        else:
            default = cls.model_fields[target].get_default(call_default_factory=True)
            cfg.setdefault("backend", default.backend if default is not None else cls._legacy_backends.get(target))
            options = value if old == "options" or old.endswith("_options") else {old: value}
            if old in cls._legacy_options and not _accepts(slots[target].task, cfg["backend"], old):
                moved.append(f"{old}: ignored (backend {cfg['backend']!r} has no such option)")
                data[target] = cfg
                continue
            cfg["options"] = {**cfg.get("options", {}), **options}
        data[target] = cfg
        moved.append(f"{old}: -> {target}: {{{'backend' if old == 'backend' else 'options'}: ...}}")
    if moved:
        warnings.warn(
            f"stage {data.get('stage')!r}: old recipe form ({'; '.join(moved)}); write each backend slot as "
            f"'<slot>: {{backend: NAME, options: {{...}}}}' (the old keys are accepted until hoiforge 0.3)",
            RecipeDeprecation,
            stacklevel=3,
        )
    return data
