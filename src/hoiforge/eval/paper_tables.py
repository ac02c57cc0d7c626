"""The papers' evaluation tables as data: their columns, and the numbers they published (for ``--compare``).

Copied from the VirtualModel and ShoeModel papers (the team's PAPER_TABLES.md). ``None`` is a
cell the paper leaves empty. Column keys are the keys of our result rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    higher_is_better: bool
    digits: int = 2


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    label: str  # what a row is: method, variant, model
    columns: tuple[Column, ...]
    paper_rows: tuple[dict, ...]
    paper_settings: str
    label_columns: tuple[str, ...] = ()  # extra text columns shown after the label (e.g. task)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.columns]

    def paper_row(self, label: str) -> dict | None:
        return next((r for r in self.paper_rows if r[self.label].lower() == label.lower()), None)


FID = Column("fid", "FID ↓", False)
KID = Column("kid_x1k", "KID×1k ↓", False)
CLIP = Column("clip", "CLIP ↑", True)
AP = Column("ap", "AP ↑", True)
AR = Column("ar", "AR ↑", True)
OER = Column("oer_pct", "OER % ↓", False)


def _rows(label: str, keys: list[str], rows: list[tuple]) -> tuple[dict, ...]:
    return tuple({label: r[0], **dict(zip(keys, r[1:], strict=True))} for r in rows)


VIRTUALMODEL_TABLE1 = TableSpec(
    name="virtualmodel-table1",
    title="VirtualModel Table 1 — HoIHuman-5k test set",
    label="method",
    label_columns=("task",),
    columns=(FID, KID, CLIP, AP, AR, OER),
    paper_settings="DDIM 30 steps, CFG 7.0; T2I at 512×512 (1024 outputs resized to 512), condition-to-image short side 512; N = 5000",
    paper_rows=_rows(
        "method",
        ["task", "fid", "kid_x1k", "clip", "ap", "ar", "oer_pct"],
        [
            ("SD1.5", "HIG", 30.31, 9.97, 23.34, None, None, None),
            ("SD2.1", "HIG", 28.26, 10.02, 23.27, None, None, None),
            ("SDXL", "HIG", 25.22, 6.66, 24.97, None, None, None),
            ("DeepFloyd IF", "HIG", 29.89, 11.75, 24.51, None, None, None),
            ("ControlNet", "HIG", 25.87, 8.00, 23.13, 3.89, 13.05, None),
            ("T2I-Adapter", "HIG", 25.79, 7.75, 24.48, 3.40, 11.79, None),
            ("HumanSD", "HIG", 29.22, 9.31, 24.01, 10.38, 23.16, None),
            ("MultiControlNet (pose + inpaint)", "OHG", 24.62, 7.84, 23.65, 5.34, 14.71, 32.73),
            ("VirtualModel", "OHG", 18.37, 5.92, 24.17, 31.74, 51.28, 1.71),
        ],
    ),
    notes=("AP/AR over the 133 whole-body keypoints; CLIP score with openai/clip-vit-base-patch16.",),
)

VIRTUALMODEL_TABLE4 = TableSpec(
    name="virtualmodel-table4",
    title="VirtualModel Table 4 — ablation of the branches",
    label="variant",
    columns=(AP, AR, OER),
    paper_settings="as Table 1",
    paper_rows=_rows(
        "variant",
        ["ap", "ar", "oer_pct"],
        [("VirtualModel", 31.74, 51.28, 1.71), ("w/o CB", 28.66, 50.77, 10.25), ("w/o IB", 0.7, 3.6, 2.93)],
    ),
    notes=("w/o C_v is shown only as images in the paper.",),
)

SHOEMODEL_TABLE3 = TableSpec(
    name="shoemodel-table3",
    title="ShoeModel Table 3 — 2k shoe test set",
    label="method",
    columns=(FID, KID, CLIP),
    paper_settings="DDIM, CFG 7.0; SW trained with T = 1000; N = 2000",
    paper_rows=_rows(
        "method",
        ["fid", "kid_x1k", "clip"],
        [
            ("SD1.5", 31.62, 12.06, 23.84),
            ("SDXL", 30.24, 7.49, 24.38),
            ("SD1.5-inpaint", 30.77, 11.95, 23.49),
            ("ControlNet-inpaint", 29.83, 11.28, 23.65),
            ("Paint-by-Example", 31.92, 11.68, 22.37),
            ("ShoeModel", 22.54, 6.67, 24.02),
        ],
    ),
)

_WD_KEYS = ["bg_iou", "bg_acc", "visible_iou", "visible_acc", "wearable_iou", "wearable_acc", "miou", "macc", "aacc"]
SHOEMODEL_TABLE5 = TableSpec(
    name="shoemodel-table5",
    title="ShoeModel Table 5 — WD module, 200 test images of the wearable-area set",
    label="model",
    columns=(
        Column("bg_iou", "BG IoU", True),
        Column("bg_acc", "BG Acc", True),
        Column("visible_iou", "visible IoU", True),
        Column("visible_acc", "visible Acc", True),
        Column("wearable_iou", "wearable IoU", True),
        Column("wearable_acc", "wearable Acc", True),
        Column("miou", "mIoU", True),
        Column("macc", "mAcc", True),
        Column("aacc", "aAcc", True),
    ),
    paper_settings="WD 160k iterations, lr 6e-5, batch 16, 640×640; N = 200",
    paper_rows=_rows(
        "model",
        _WD_KEYS,
        [
            ("WD (3 classes)", 99.42, 99.67, 97.3, 98.62, 85.55, 92.45, 94.09, 96.91, 98.60),
            ("WD (2 classes: other / wearable)", 99.45, 99.60, None, None, 79.59, 89.15, 89.52, 94.38, 98.11),
        ],
    ),
    notes=("In the 2-class row the BG columns hold the 'other' class (background + visible).",),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (VIRTUALMODEL_TABLE1, VIRTUALMODEL_TABLE4, SHOEMODEL_TABLE3, SHOEMODEL_TABLE5)}
