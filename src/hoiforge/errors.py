"""Errors users see. Each says what went wrong and what to do about it."""


class HoiforgeError(Exception):
    """Base class: the CLI prints these as one clear line, without a traceback."""


class RecipeError(HoiforgeError):
    """A recipe file is missing, malformed, or names an unknown key or a bad value."""


class BackendUnavailable(HoiforgeError):
    """A stage's backend cannot run here (package missing, weights missing). Raised before work starts."""


class OutputError(HoiforgeError):
    """The output directory is unusable (unwritable, full, or built from another recipe)."""


class InputError(HoiforgeError):
    """The inputs cannot be listed (path does not exist, unreadable list file)."""


class ConversionError(HoiforgeError):
    """A published weights file is not in the format a converter expects."""


class EvalError(HoiforgeError):
    """An evaluation cannot be computed as asked (too few images, features from different settings, captions that do not match)."""


def shown(value: object, limit: int = 80) -> str:
    """A bounded repr for error messages: received values (a recipe's, a RUN's, a shard's) may be huge or
    deeply shared (a YAML alias tree), and ``repr`` walks all of them."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlist, r.maxtuple, r.maxdict = 2, limit, limit, 4, 4, 4
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
