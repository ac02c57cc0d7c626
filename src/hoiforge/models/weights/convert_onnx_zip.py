"""Extract the ONNX model from an OpenMMLab ``onnx_sdk`` zip (RTMW, DWPose) under a stable name.

The zips that rtmlib downloads hold a dated folder with ``end2end.onnx`` plus deploy/pipeline
JSON files; the backend needs only the ONNX graph, at a path that does not depend on the folder
name inside the zip.

    python -m hoiforge.models.weights.convert_onnx_zip SRC.zip DST.onnx
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

from hoiforge.errors import ConversionError
from hoiforge.models.weights.convert_cli import converter_main

MEMBER = "end2end.onnx"


def convert(src: Path, dst: Path) -> Path:
    """Copy the zip's single ``end2end.onnx`` to ``dst`` (atomically: a present dst is complete)."""
    try:
        with zipfile.ZipFile(src) as z:
            found = [m for m in z.infolist() if PurePosixPath(m.filename).name == MEMBER and not m.is_dir()]
            if len(found) != 1:
                raise ConversionError(f"{src.name}: expected one {MEMBER}, found {len(found)}")
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            with z.open(found[0]) as member, open(tmp, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConversionError(f"{src.name}: not a readable zip ({e})") from None
    tmp.replace(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    return converter_main(convert, "python -m hoiforge.models.weights.convert_onnx_zip SRC.zip DST.onnx", argv)


if __name__ == "__main__":
    raise SystemExit(main())
