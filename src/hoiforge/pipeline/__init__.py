"""Recipes, input listing, the Ray plan, shard writing, resume and the manifest."""
