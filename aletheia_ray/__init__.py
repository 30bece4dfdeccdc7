"""aletheia_ray: Ray-native RLVR for generative code verifiers and code generators.

The library is this folder; the Ray layer (``actors/``) and the entry points (``launch/``) sit beside
it at the top of the repo and are installed as ``aletheia_ray.actors`` and ``aletheia_ray.launch``
(setup.py ``package_dir``). From a source checkout that is not what the installer mapped (a Ray
job's uploaded ``working_dir`` imported by the workers, a plain ``PYTHONPATH``), the same names
resolve through the checkout's root, added to this package's search path below.
"""
from pathlib import Path as _Path

_CHECKOUT = _Path(__file__).resolve().parent.parent
if (_CHECKOUT / "setup.py").is_file() and (_CHECKOUT / "actors" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 - a package's __path__: finds actors/ and launch/
