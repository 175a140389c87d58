"""`edgetl.finetune`, `edgetl.export` and `edgetl.quantize` name both a package and a
public function: importing the package replaces the function attribute on `edgetl`, so
each package is made callable and forwards to its function."""
from __future__ import annotations

import importlib
import sys
import types


def make_package_callable(package: str, function: str) -> None:
    """Calling the module `package` calls `function` ("module:name", imported on first call)."""
    module_name, attr = function.split(":")

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module(module_name), attr)(*args, **kwargs)

    sys.modules[package].__class__ = _CallablePackage
