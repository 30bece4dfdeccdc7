"""Adversarial modifications (paper Appendix C): one module per family, one registry.

Importing this package registers every transform in ``ADV_TRANSFORMS``.
"""
from aletheia_ray.testbed.adversarial import comments, complexity, minification, renaming, statements  # noqa: F401
from aletheia_ray.testbed.adversarial.registry import ADV_TRANSFORMS, AdvTransform, get_transform, names

__all__ = ["ADV_TRANSFORMS", "AdvTransform", "get_transform", "names"]
