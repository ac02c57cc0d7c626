"""The sample contract, keypoint layouts, rendering and torch loaders."""
