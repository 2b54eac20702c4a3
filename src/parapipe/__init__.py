"""parapipe: a CI pipeline's steps in parallel containers made from one image."""

__version__ = "0.1.0"
