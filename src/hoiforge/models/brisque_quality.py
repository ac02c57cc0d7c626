"""BRISQUE technical-quality score (embedded: ``brisque`` ships its SVM). Lower is better.

This measures distortion (blur, noise, blocking), NOT aesthetics: stages report it as
``quality.brisque``, never as an aesthetic score.

brisque 0.2.0 breaks on numpy 2 / scipy 1.17: its generalized-Gaussian fit returns 1-element
arrays for two of the four parameters per coefficient map, so its feature vector is a ragged
object array that ``float()`` rejects. We compute the same features with its own methods and
flatten them to 36 floats before its (unchanged) scaling and SVM regression.
"""

from __future__ import annotations

import numpy as np

from hoiforge.models.base import require

INSTALL = "pip install brisque==0.2.0 (ships its SVM model; needs libsvm-official, scikit-image, scipy)"
N_FEATURES = 36  # 18 per scale, two scales


class BrisqueScorer:
    package = "brisque"

    name = "brisque"

    def __init__(self) -> None:
        self.check()
        from brisque import BRISQUE

        self._brisque = BRISQUE(url=False)

    @classmethod
    def check(cls, **_) -> None:
        require("brisque", INSTALL)
        require("libsvm", INSTALL)

    def features(self, rgb: np.ndarray) -> np.ndarray:
        import cv2
        import skimage.color

        b = self._brisque
        grey = skimage.color.rgb2gray(rgb) if rgb.ndim == 3 else rgb.astype(np.float64) / 255.0
        full = b.calculate_brisque_features(grey, kernel_size=7, sigma=7 / 6)
        half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
        small = b.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)
        # The numpy-2 fix: every feature becomes one float, whatever shape the fit returned.
        flat = np.array([np.asarray(f, dtype=np.float64).reshape(-1)[0] for f in (*full, *small)])
        assert flat.shape == (N_FEATURES,), flat.shape
        return flat

    def score(self, images: list[np.ndarray]) -> list[float]:
        return [float(self._brisque.calculate_image_quality_score(self.features(np.asarray(img)))) for img in images]
