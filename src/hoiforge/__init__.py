"""hoiforge: human-object-interaction training data for product-advertising image generators."""

__version__ = "0.1.0"
