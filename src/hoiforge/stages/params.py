"""A stage's recipe keys: ``StageParams``, its resources and its backend slots (unknown keys are errors)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hoiforge.stages.legacy import migrate_old_form
from hoiforge.stages.resources import Resources
from hoiforge.stages.slots import Slot


class StageParams(BaseModel):
    """Recipe keys of a stage. Subclasses add theirs and their slots; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    resources: Resources = Field(default_factory=Resources)

    # Old recipe forms (before backend slots), migrated with a RecipeDeprecation warning:
    # old key -> slot it configures. "backend"/"options" go to the stage's first slot.
    _legacy_options: ClassVar[dict[str, str]] = {}
    # Optional slots (no default backend): the backend an old-form options key implied.
    _legacy_backends: ClassVar[dict[str, str]] = {}

    @classmethod
    def slots(cls) -> dict[str, Slot]:
        return {name: m for name, f in cls.model_fields.items() for m in f.metadata if isinstance(m, Slot)}

    @model_validator(mode="before")
    @classmethod
    def _migrate_old_form(cls, data: Any) -> Any:
        return migrate_old_form(cls, data)

    @field_validator("*", mode="after")
    @classmethod
    def _check_slot(cls, value: Any, info) -> Any:
        marker = next((m for m in cls.model_fields[info.field_name].metadata if isinstance(m, Slot)), None)
        if marker is not None and value is not None:
            value.resolve(marker.task)
        return value
