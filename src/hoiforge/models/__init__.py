"""Model backends: one adapter per library, each behind a small task protocol (models.base)."""
