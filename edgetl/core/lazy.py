"""`edgetl.finetune`, `edgetl.export`, `edgetl.quantize` and `edgetl.bench` name both a
package and a public function: importing the package replaces the function attribute on
`edgetl`, so each package is made callable and forwards to its function."""
from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


def make_package_callable(package: str, function: str) -> None:
    """Calling the module `package` calls `function` ("module:name", imported on first call)."""
    module_name, attr = function.split(":")

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module_name), attr)(*args, **kwargs)

    sys.modules[package].__class__ = _CallablePackage


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `package.<module>` only when one of `names`
    (attribute -> module) is first used, so that importing the package stays light."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
