"""The Ray layer (installed as ``aletheia_ray.actors``): the controller loop, one Ray actor role per
file, the actor-group helper, the one Ray connector and the weight-sync transports. Everything
that imports Ray lives here; the library (the rest of ``aletheia_ray``) never imports this package."""
