"""genosae: candidate biomarkers from sparse autoencoders on genomic language models.

``import genosae`` registers the project's model type (``genosae-cnn``) with the ``transformers`` Auto
classes, so ``AutoModelForMaskedLM.from_pretrained("models/genosae-yeast-cnn")`` works after it. The
registration is lazy: it runs when ``transformers`` is first imported (at once if it already is), so
importing genosae alone does not pay for torch and transformers.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType

__version__ = "0.1.0"
__all__ = ["__version__"]


def _register_auto_classes() -> None:
    import genosae.model.lm  # noqa: F401  (its import registers the config and models)


class _RegisterWhenTransformersLoads(importlib.abc.MetaPathFinder):
    """Finds ``transformers`` with the other finders and registers genosae's model once it has loaded."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _register_auto_classes()

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


if "transformers" in sys.modules:
    _register_auto_classes()
elif not any(isinstance(f, _RegisterWhenTransformersLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTransformersLoads())
