"""pyflux-mnist: MNIST prepared in NumPy, trained by Julia's Flux.jl or its NumPy twin.

The public API: :func:`train`, :func:`load_model`, :class:`Model`, the recipes, and :func:`load_mnist`.
Importing the package loads neither torch nor Julia; backends are imported when first used.
"""

from .errors import PyfluxError
from .mnist import load_mnist
from .model import Model, load_model
from .recipes import RECIPES, get_recipe
from .spec import Recipe
from .training import TrainResult, train
from .version import __version__

__all__ = [
    "RECIPES",
    "Model",
    "PyfluxError",
    "Recipe",
    "TrainResult",
    "__version__",
    "get_recipe",
    "load_mnist",
    "load_model",
    "train",
]
