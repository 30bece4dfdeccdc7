"""Command-line entry points (installed as ``aletheia_ray.launch``): aletheia-train, -eval, -sandbox,
-testbed, -bench. Each validates its input before it imports the Ray layer."""
