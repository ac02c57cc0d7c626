"""Where paper-grade weights come from: a local directory or the Hugging Face cache, never a download.

A backend's ``model`` option is either a directory (holding ``config.json`` and weights) or a hub
repo id that must already be in the HF cache (``huggingface-cli download <id>`` on a machine with
internet, then copy the cache). Both resolve to a local directory before anything loads.
"""

from __future__ import annotations

from pathlib import Path

from hoiforge.errors import BackendUnavailable


def resolve_model_dir(model: str | Path | None, what: str, marker: str | None = "config.json") -> Path:
    """The local directory of ``model`` (holding ``marker``, unless None); BackendUnavailable saying what to do if there is none."""
    if not model:
        raise BackendUnavailable(f"{what}: no model given; set options.model to a local directory or a cached Hugging Face repo id")
    path = Path(model).expanduser()
    if path.is_dir():
        if marker and not (path / marker).is_file():
            raise BackendUnavailable(f"{what}: {path} has no {marker}; point options.model at a saved model directory")
        return path
    if path.exists() or str(model).count("/") != 1:
        raise BackendUnavailable(f"{what}: {model} is neither a model directory nor a Hugging Face repo id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(model), local_files_only=True))
    except LocalEntryNotFoundError:
        raise BackendUnavailable(
            f"{what}: {model} is not in the Hugging Face cache and this tool never downloads weights; "
            f"run `huggingface-cli download {model}` where the internet is reachable, or pass a local directory"
        ) from None


def resolve_file(path: str | Path | None, what: str, option: str) -> Path:
    """A local weights file; BackendUnavailable saying which option to set if there is none."""
    if not path:
        raise BackendUnavailable(f"{what}: no weights file given; set options.{option} to a local file")
    p = Path(path).expanduser()
    if not p.is_file():
        raise BackendUnavailable(f"{what}: weights file {p} does not exist (options.{option})")
    return p
