"""TextEmbedder: sentence embeddings with the pooling a sentence-transformers checkpoint declares.

Reads ``modules.json`` (Transformer -> Pooling -> [Normalize]) and ``1_Pooling/config.json``
(cls / mean / max / mean_sqrt_len / lasttoken). A plain Transformers checkpoint gets mean pooling,
as sentence-transformers itself does.
"""

import json
import logging
from pathlib import Path

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.presets.config import read_json, write_json
from keras_models.tasks.task import Task

logger = logging.getLogger("keras_models")

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len", "lasttoken")
_ST = "sentence_transformers.models."


def read_sentence_transformers_config(folder):
    """Return ``(pooling_modes, normalize, max_seq_length)`` from a sentence-transformers folder."""
    folder = Path(folder)
    path = folder / "modules.json"
    if not path.is_file():
        return ["mean"], False, None
    try:
        modules = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"Malformed JSON in {path}: {e}") from e
    modes, normalize = ["mean"], False
    for m in modules:
        kind = m.get("type", "")
        if kind == _ST + "Transformer":
            continue
        if kind == _ST + "Pooling":
            pc = read_json(folder / m.get("path", "1_Pooling") / "config.json")
            modes = [
                mode for mode in POOLING_MODES
                if pc.get(f"pooling_mode_{mode}_token" if mode == "cls" else f"pooling_mode_{mode}_tokens")
                or pc.get(f"pooling_mode_{mode}")
            ]
            if not modes:
                raise ConfigError(f"{folder / m.get('path', '1_Pooling') / 'config.json'}: no pooling mode enabled")
        elif kind == _ST + "Normalize":
            normalize = True
        else:
            raise ConfigError(f"{path}: module type {kind!r} is not supported yet")
    st_cfg = read_json(folder / "sentence_bert_config.json", required=False) or {}
    return modes, normalize, st_cfg.get("max_seq_length")


@keras.saving.register_keras_serializable(package="keras_models")
class TextEmbedder(Task):
    task_name = "TextEmbedder"

    def __init__(self, backbone, pooling=("mean",), normalize=False, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        pooling = [pooling] if isinstance(pooling, str) else list(pooling)
        bad = [p for p in pooling if p not in POOLING_MODES]
        if bad:
            raise ValueError(f"pooling: unknown modes {bad}; choose from {POOLING_MODES}")
        self.pooling = pooling
        self.normalize = normalize

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        return kwargs

    @classmethod
    def from_preset(cls, preset, dtype=None, load_weights=True, preprocessor=True, **kwargs):
        from keras_models.presets.resolve import resolve_preset

        folder = resolve_preset(preset)
        modes, normalize, max_len = read_sentence_transformers_config(folder)
        kwargs.setdefault("pooling", modes)
        kwargs.setdefault("normalize", normalize)
        if max_len is not None:
            kwargs.setdefault("sequence_length", max_len)
        return super().from_preset(folder, dtype=dtype, load_weights=load_weights,
                                   preprocessor=preprocessor, **kwargs)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, sequence_length=None, **kw):
        from keras_models.tasks.text import _text_preprocessor

        return _text_preprocessor(folder, hf, "TextClassifierPreprocessor", sequence_length=sequence_length)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        h = self.backbone(inputs, training=training)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones(ops.shape(h)[:2], dtype=h.dtype)
        m = ops.cast(mask, h.dtype)[..., None]
        count = ops.maximum(ops.sum(m, axis=1), 1e-9)
        parts = []
        for mode in self.pooling:
            if mode == "cls":
                parts.append(h[:, 0])
            elif mode == "mean":
                parts.append(ops.sum(h * m, axis=1) / count)
            elif mode == "mean_sqrt_len":
                parts.append(ops.sum(h * m, axis=1) / ops.sqrt(count))
            elif mode == "max":
                parts.append(ops.max(ops.where(m > 0, h, -1e9), axis=1))
            elif mode == "lasttoken":
                last = ops.cast(ops.sum(ops.cast(mask, "int32"), axis=1) - 1, "int32")
                parts.append(ops.take_along_axis(h, last[:, None, None], axis=1)[:, 0])
        x = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        if self.normalize:
            x = x / ops.maximum(ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True)), 1e-12)
        return x

    def embed(self, texts, batch_size=32):
        """Embed a list of strings (or one string) -> numpy (n, dim)."""
        single = isinstance(texts, str)
        out = self.predict([texts] if single else list(texts), batch_size=batch_size, verbose=0)
        return out[0] if single else out

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        folder = Path(folder)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": _ST + "Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST + "Pooling"},
        ]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": _ST + "Normalize"})
        (folder / "modules.json").write_text(json.dumps(modules, indent=2))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        pc = {"word_embedding_dimension": self.backbone.hidden_size}
        for mode in POOLING_MODES:
            key = "pooling_mode_cls_token" if mode == "cls" else f"pooling_mode_{mode}_tokens"
            if mode == "lasttoken":
                key = "pooling_mode_lasttoken"
            pc[key] = mode in self.pooling
        write_json(folder / "1_Pooling" / "config.json", pc)
        seq_len = getattr(self.preprocessor, "sequence_length", None)
        if seq_len:
            write_json(folder / "sentence_bert_config.json", {"max_seq_length": seq_len, "do_lower_case": False})

    def get_config(self):
        c = super().get_config()
        c.update(pooling=self.pooling, normalize=self.normalize)
        return c
