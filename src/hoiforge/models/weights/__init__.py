"""Paper-grade weights: the registry of what each backend needs, the download, where they are found, the converters.

| module | owns |
|---|---|
| ``registry`` | every entry (files, sha256, licence, converter), the weights root, ``resolve`` for backends |
| ``digest`` | sha256 of a file (registry checks and fetch verify with the same code) |
| ``fetch`` | download with resume and checksum verification (``hoiforge models fetch``) |
| ``hf_local`` | a local model directory or the Hugging Face cache, never a download |
| ``convert_*`` | one original checkpoint format each -> what the backend loads (``python -m hoiforge.models.weights.convert_X SRC DST``) |
| ``convert_cli`` | the command line the converters share |
"""
