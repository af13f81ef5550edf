"""The shipped variants: each module holds one variant, nothing but its callbacks."""
import importlib
import pkgutil

NAMES = [m.name for m in pkgutil.iter_modules(__path__)]


def get(name: str):
    """The variant defined in flexla/variants/<name>.py."""
    if name not in NAMES:
        raise KeyError(f"no shipped variant {name!r}; shipped: {', '.join(NAMES)}")
    module = importlib.import_module(f"{__name__}.{name}")
    from ..frontend.decorator import Variant
    return next(v for v in vars(module).values() if isinstance(v, Variant) and v.__module__ == module.__name__)
