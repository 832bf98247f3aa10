"""pyflux-mnist: MNIST prepared in NumPy, trained by Julia's Flux.jl or its NumPy twin."""

__version__ = "0.1.0"
