"""Evaluation: FID, KID, CLIP score, whole-body pose AP/AR, OER, mIoU.

Not built yet: no metric ships in this version. The pieces metrics will call exist: the product
segmenter for OER (``hoiforge.models.segment_service``), the 133 OKS sigmas for whole-body AP
(``hoiforge.datasets.keypoints``), and weights entries for CLIP ViT-B/16 and FID Inception.
"""
