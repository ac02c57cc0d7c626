"""VirtualModel configs: ``tiny`` (random, CPU, untrained), ``sd15`` (paper sizes, local weights), or a YAML path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from hoiforge import safe_yaml
from hoiforge.training.core.config import ConfigError, TrainSettings
from hoiforge.training.core.config import Strict as _Strict

CONFIG_DIR = Path(__file__).parent / "configs"
BUNDLED = ("tiny", "sd15")
# What a stage said before TrainSettings, kept so older configs and RUN config.yaml files still load.
STAGE_DEFAULTS = {"lr": 1e-5, "optimizer": "adam", "checkpoint_every": 500, "validate_every": 500}


class ModelsConfig(_Strict):
    source: Literal["random", "pretrained"]
    seed: int = Field(0, description="random: the init seed (the same seed rebuilds the same untrained models)")
    stable_diffusion: str | None = Field(None, description="pretrained: weights-registry name or a local SD folder (unet/ vae/ ...)")
    dino: str | None = Field(None, description="pretrained: weights-registry name or a local DINOv2 folder")
    unet: dict[str, Any] | None = Field(None, description="random: UNet2DConditionModel config")
    vae: dict[str, Any] | None = Field(None, description="random: AutoencoderKL config")
    text_encoder: dict[str, Any] | None = Field(None, description="random: CLIPTextConfig (the tokenizer is CLIP BPE over bytes)")
    dino_config: dict[str, Any] | None = Field(None, description="random: Dinov2Config")
    dino_image_size: int = Field(224, ge=14)
    text_chunks: int = Field(3, ge=1, description="captions are encoded in at most this many 77-token chunks")
    precomputed: dict[str, str] = Field(
        default_factory=dict,
        description="ids (vae, text_encoder, dino) whose precomputed members these models can use; empty: always encode",
    )


class BranchesConfig(_Strict):
    channel_fraction: float = Field(0.4, gt=0, le=1)
    identity_branch: bool = True  # False: Table 4 "w/o IB"
    content_branch: bool = True  # False: "w/o CB"
    close_view: bool = True  # False: "w/o C_v"
    expert_channels: tuple[int, ...] = (16, 32, 96, 256)
    mask_channels: tuple[int, ...] = (32, 32, 1)


class TrainingConfig(_Strict):
    """Each stage's TrainSettings (training.core); a TrainSettings key written at this level applies to both stages."""

    base: TrainSettings
    branches: TrainSettings
    condition_dropout: float = Field(0.1, ge=0, le=1, description="each condition dropped with this probability (CFG)")

    @model_validator(mode="before")
    @classmethod
    def _shared_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        shared = {k: data.pop(k) for k in list(data) if k in TrainSettings.model_fields}
        for stage in ("base", "branches"):
            own = data.get(stage)
            if isinstance(own, dict):
                data[stage] = _stage_form({**STAGE_DEFAULTS, **shared, **own})
        return data


def _stage_form(stage: dict[str, Any]) -> dict[str, Any]:
    """The settings of one stage; the older per-process form (batch_size per process + gradient_accumulation_steps)
    becomes a global batch of batch_size x accumulation for one process, holding the old batch per device."""
    if "gradient_accumulation_steps" in stage:
        stage = dict(stage)
        accumulation = stage.pop("gradient_accumulation_steps")
        if isinstance(accumulation, int) and isinstance(stage.get("batch_size"), int):
            stage.setdefault("per_device_batch", stage["batch_size"])
            stage["batch_size"] = stage["batch_size"] * accumulation
    if stage.get("epochs") is None and stage.get("max_steps") is None:
        stage["max_steps"] = 1000
    return stage


class DataConfig(_Strict):
    resolution: int = Field(512, ge=16, multiple_of=8, description="short side of the training resize; square crops of this side")
    crop: Literal["random", "center"] = "random"
    person_margin: float = Field(0.1, ge=0, description="stage 1 fallback: person box grown by this much when no close_view")
    product_margin: float = Field(0.25, ge=0, description="close view fallback: product box grown by this much per side")
    shuffle_buffer: int = Field(1000, ge=1)
    workers: int = Field(4, ge=0)
    require_precomputed: bool = Field(False, description="fail if shards lack latent/text/dino.npy instead of encoding on the fly")


class GenerateConfig(_Strict):
    steps: int = Field(30, ge=1)
    cfg: float = Field(7.0, ge=0)
    validation_steps: int = Field(30, ge=1, description="DDIM steps of the validation images")


class VirtualModelConfig(_Strict):
    name: str
    untrained: bool = Field(False, description="random weights: say so loudly wherever it runs")
    models: ModelsConfig
    branches: BranchesConfig = Field(default_factory=BranchesConfig)
    training: TrainingConfig
    data: DataConfig = Field(default_factory=DataConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)

    def architecture(self) -> str:
        """Fingerprint of what decides the weights' shapes and meaning (not batch sizes or step counts)."""
        m = self.models
        what = {
            "source": m.source,
            "seed": m.seed if m.source == "random" else None,
            "stable_diffusion": Path(m.stable_diffusion).name if m.stable_diffusion else None,
            "dino": Path(m.dino).name if m.dino else None,
            "unet": m.unet,
            "vae": m.vae,
            "text_encoder": m.text_encoder,
            "dino_config": m.dino_config,
            "dino_image_size": m.dino_image_size,
            "branches": self.branches.model_dump(mode="json"),
            "resolution": self.data.resolution,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(name_or_path: str | Path) -> VirtualModelConfig:
    """A bundled config by name (tiny, sd15) or a YAML file; ConfigError in one sentence otherwise."""
    text_name = str(name_or_path)
    path = CONFIG_DIR / f"{text_name}.yaml" if text_name in BUNDLED else Path(text_name).expanduser()
    if not path.is_file():
        raise ConfigError(f"config {text_name!r} is neither a bundled config ({', '.join(BUNDLED)}) nor a YAML file")
    try:
        doc = safe_yaml.load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a VirtualModel config is a YAML mapping")
    try:
        return VirtualModelConfig.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{path}: {where}: {err['msg']}") from None
