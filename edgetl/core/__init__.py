"""The ground floor: what every other layer stands on and nothing here stands on them.

Errors (message + hint, exit code 2), the settings base, progress and tables, paths and
the cache folder, thread counts, metrics helpers, the ModelCard, and the one rule for
outputs (what may be written or replaced, atomic writes). Nothing in this package imports
another edgetl package.
"""
