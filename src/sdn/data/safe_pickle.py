"""A restricted unpickler for the preprocessed files users download from strangers (StackGAN's
`filenames.pickle`, `class_info.pickle`, `char-CNN-RNN-embeddings.pickle`, AttnGAN's `captions.pickle`).

It admits lists, dicts, tuples, sets, strings, bytes, numbers and numpy arrays, and refuses every
other global (the way a pickle runs code) with a clear error, before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from sdn.errors import UserError

_ALLOWED = {
    ("builtins", name) for name in ("list", "dict", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "complex", "bool")
} | {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("_codecs", "encode"),  # how Python 2 pickles (StackGAN's) store byte strings
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        module = "builtins" if module == "__builtin__" else module  # Python 2 pickles
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        return super().find_class(module, name)


def safe_load(path: str | Path):
    """Unpickle `path` admitting only plain data; a UserError names the file and what was refused."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return _Restricted(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: unsafe or corrupt pickle ({e}); only lists, dicts, strings, numbers and numpy arrays are read") from None
    except Exception as e:
        raise UserError(f"{path}: not a readable pickle ({type(e).__name__})") from None
