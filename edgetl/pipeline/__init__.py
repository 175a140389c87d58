"""Recipes (pipeline/recipe.py), the stage cache (pipeline/cache.py) and `edgetl run`
(pipeline/run.py): one YAML file from data to a verified bundle."""
