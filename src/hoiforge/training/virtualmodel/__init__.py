"""VirtualModel (product-advertising human-object images): model, configs, trainer, generation.

``model`` (IB/CB branches on diffusers blocks), ``unet_walk`` (the UNet run layer by layer),
``components`` (UNet/VAE/CLIP/DINOv2 from configs or local weights), ``conditioning`` (text,
latents, close-view features, CFG dropout), ``train`` (the two stages on ``training.core``),
``pipeline`` (DDIM + CFG + Content Backfill), ``generate`` (the command's input handling).
"""
