"""Streaming, validating safetensors reader and an atomic writer.

The reader indexes each file from its header and reads one tensor at a time into a numpy array,
so peak memory while loading stays near one copy of the model plus one tensor. Every structural problem (truncated file,
bad header, overlapping or out-of-range offsets, unknown dtype) raises :class:`CheckpointError`
naming the file and, where relevant, the tensor. Pickle checkpoints are refused, never opened.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np

from keras_models.errors import CheckpointError

_DTYPES = {
    "F64": np.dtype("float64"),
    "F32": np.dtype("float32"),
    "F16": np.dtype("float16"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("int64"),
    "I32": np.dtype("int32"),
    "I16": np.dtype("int16"),
    "I8": np.dtype("int8"),
    "U8": np.dtype("uint8"),
    "BOOL": np.dtype("bool"),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack")


class SafetensorsFile:
    """One validated, memory-mapped safetensors file."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except OSError as e:
            raise CheckpointError(f"Cannot read weights file {self.path}: {e}") from e
        if size < 8:
            raise CheckpointError(f"{self.path} is truncated: {size} bytes, no safetensors header")
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(
                    f"{self.path} is corrupted or truncated: header claims {n} bytes, file has {size}"
                )
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
        except (UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{self.path} has a malformed safetensors header: {e}") from e
        self.metadata = header.pop("__metadata__", None) or {}
        self._data_start = 8 + n
        data_len = size - self._data_start
        self._entries = {}
        spans = []
        for name, info in header.items():
            try:
                dtype = _DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                start, end = (int(o) for o in info["data_offsets"])
            except KeyError as e:
                raise CheckpointError(
                    f"{self.path}: tensor {name!r} has an unsupported dtype or missing field {e}"
                ) from e
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{self.path}: tensor {name!r} has a malformed entry") from e
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if start < 0 or end < start or end - start != nbytes:
                raise CheckpointError(
                    f"{self.path}: tensor {name!r} offsets {start}..{end} do not match its "
                    f"shape {shape} and dtype {info['dtype']}"
                )
            if end > data_len:
                raise CheckpointError(
                    f"{self.path} is truncated: tensor {name!r} ends at byte {end} of the data "
                    f"section but the file holds only {data_len}"
                )
            self._entries[name] = (dtype, shape, start, end)
            spans.append((start, end, name))
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise CheckpointError(f"{self.path}: tensors {n0!r} and {n1!r} overlap")
        self._file = None

    def keys(self):
        return list(self._entries)

    def shape(self, name):
        return self._entries[name][1]

    def dtype(self, name):
        return self._entries[name][0]

    def get(self, name) -> np.ndarray:
        """Read tensor ``name`` into a fresh numpy array (one positioned read).

        Deliberately not a view onto a memory map: mapped pages stay resident (and count in the
        process's RSS) until the whole file is unmapped, so loading through views costs a second
        copy of the model; a read per tensor keeps the overhead at one tensor.
        """
        dtype, shape, start, end = self._entries[name]
        if self._file is None:
            self._file = open(self.path, "rb")
        buf = _aligned_empty(end - start)
        self._file.seek(self._data_start + start)
        if self._file.readinto(memoryview(buf)) != end - start:
            raise CheckpointError(f"{self.path}: could not read tensor {name!r} (file truncated?)")
        return buf.view(dtype).reshape(shape)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def _shard_path(folder, name, index):
    """A shard named by the index, which must be a plain file name inside the preset folder (an
    absolute path, ``..`` or a link out of the folder is refused before anything is opened)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise CheckpointError(f"Shard index {index} names an invalid shard file {name!r}")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or path.parent != root and root not in path.parents:
        raise CheckpointError(f"Shard index {index} names a shard outside the preset folder: {name!r}")
    if not name.endswith(".safetensors"):
        raise CheckpointError(f"Shard index {index} names a shard that is not a .safetensors file: {name!r}")
    return path


def _aligned_empty(nbytes, alignment=64):
    """An uninitialised byte buffer whose data starts on an ``alignment`` boundary: backends can
    then adopt it as a tensor without another copy (JAX on the CPU requires 64-byte alignment)."""
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    offset = (-raw.ctypes.data) % alignment
    return raw[offset : offset + nbytes]


class CheckpointReader:
    """All safetensors files of a preset folder (single file or sharded), keyed by tensor name."""

    def __init__(self, folder, filename=None):
        folder = Path(folder)
        self.folder = folder
        files = self._find_files(folder, filename)
        self._files = {}
        self._where = {}
        for f in files:
            st = SafetensorsFile(f)
            self._files[f] = st
            for k in st.keys():
                if k in self._where:
                    raise CheckpointError(f"Tensor {k!r} appears in both {self._where[k]} and {f}")
                self._where[k] = f

    @staticmethod
    def _find_files(folder: Path, filename=None):
        if filename is not None:
            p = folder / filename
            if not p.is_file():
                raise CheckpointError(f"Weights file {p} does not exist")
            return [p]
        index = folder / "model.safetensors.index.json"
        single = folder / "model.safetensors"
        if single.is_file():
            return [single]
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
                raise CheckpointError(f"Malformed shard index {index}: {e}") from e
            paths = [_shard_path(folder, s, index) for s in shards]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise CheckpointError(f"Shard index {index} lists missing files: {missing}")
            return paths
        others = sorted(folder.glob("*.safetensors"))
        if len(others) == 1:
            return others
        unsafe = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if unsafe:
            raise CheckpointError(
                f"{folder} holds only {unsafe}: pickle-based checkpoints are refused (loading them "
                "can run arbitrary code). Convert them to safetensors first, e.g. with "
                "transformers' save_pretrained(..., safe_serialization=True)."
            )
        raise CheckpointError(f"No model.safetensors (or sharded index) found in {folder}")

    def keys(self):
        return list(self._where)

    def __contains__(self, name):
        return name in self._where

    def file_of(self, name) -> Path:
        return self._where[name]

    def shape(self, name):
        return self._files[self._where[name]].shape(name)

    def dtype(self, name):
        return self._files[self._where[name]].dtype(name)

    def get(self, name) -> np.ndarray:
        return self._files[self._where[name]].get(name)

    def close(self):
        for f in self._files.values():
            f.close()


def save_file(tensors: dict, path, metadata: dict | None = None):
    """Write ``{name: numpy array}`` as safetensors atomically (temp file, then rename)."""
    path = Path(path)
    header = {}
    offset = 0
    arrays = []
    for name, arr in tensors.items():
        arr = np.require(arr, requirements="C")  # keeps 0-d tensors 0-d
        if arr.dtype not in _NAMES:
            raise CheckpointError(f"Cannot write tensor {name!r} of dtype {arr.dtype} to {path}")
        header[name] = {
            "dtype": _NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        arrays.append(arr)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for arr in arrays:
                f.write(arr.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
