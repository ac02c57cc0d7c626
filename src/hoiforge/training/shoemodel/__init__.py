"""ShoeModel (put a user's shoe on generated legs): WD, LpS phase 1/2 and SW trained on shoe-leg shards, and the full system.

| module | what | network |
|---|---|---|
| ``wd`` | wearable-area detector: background / visible / wearable on the shoe crop | transformers SegFormer |
| ``lps1`` | 8 foot keypoints from X_w (the shoe without its wearable area) | transformers ViTPose, MSRA heatmaps |
| ``lps2`` | 6 leg keypoints sampled for the 8 foot points | eps-MLP diffusion, T = 25, cosine betas |
| ``sw`` | the picture from concat(X_w, X_p) and the prompt | diffusers ControlNet over a frozen SD UNet |

``train.py`` runs each on the shared training core (hoiforge.training.core); ``system.py`` chains
them for `hoiforge generate shoemodel`; ``config.py`` holds the tiny and paper presets.
"""
