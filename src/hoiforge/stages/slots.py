"""Backend slots: a stage's ``Params`` field annotated with ``Slot(task)``, filled in a recipe with
``{backend: NAME, options: {...}}`` (or just ``NAME``) and validated against the backend's own options."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from hoiforge.models import registry


@dataclass(frozen=True)
class Slot:
    """Annotation marker of a backend slot field: which task its backend performs."""

    task: str


class SlotConfig(BaseModel):
    """A recipe's choice for one backend slot: ``{backend: NAME, options: {...}}`` (or ``NAME``)."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    options: dict[str, Any] = Field(default_factory=dict)
    _typed: registry.BackendOptions | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"backend": data} if isinstance(data, str) else data

    def resolve(self, task: str) -> tuple[registry.Backend, registry.BackendOptions]:
        """The registered backend and its validated options; ValueError saying what is wrong."""
        try:
            b = registry.backend(task, self.backend)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        if self._typed is None or type(self._typed) is not b.options:
            self._typed = registry.validate_options(b, self.options)
        return b, self._typed

    def options_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.options, sort_keys=True, default=str).encode()).hexdigest()[:12]


def slot(default: str | None) -> Any:
    """A slot field's default: that backend with no options, or None for an optional slot."""
    return Field(default_factory=lambda: SlotConfig(backend=default)) if default else None
