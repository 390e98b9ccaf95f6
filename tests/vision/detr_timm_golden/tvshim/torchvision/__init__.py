"""Import shim for recording references only: timm imports torchvision at import time (datasets,
transforms, ops.misc.FrozenBatchNorm2d), and this CPU machine cannot load torchvision's CUDA-built
extension. Every torchvision submodule here is a placeholder whose attributes are placeholder
classes; timm's ResNet numerics use none of them (Transformers' DETR swaps in its own frozen
BatchNorm)."""
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.28.0"


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"


class _Placeholder(metaclass=_Meta):
    def __init__(self, *args, **kwargs):
        pass


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (_Placeholder,), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("torchvision.") and fullname not in ("torchvision.ops", "torchvision.ops.misc"):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Module(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
