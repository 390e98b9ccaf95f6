"""MMS language adapters (Wav2Vec2 checkpoints with ``adapter_attn_dim`` in config.json).

An MMS checkpoint holds the base model with one language's adapters in its weights, and one file per
language, ``adapter.<lang>.safetensors``: every pre-norm block's adapter (``encoder.layers.N.adapter_layer``:
LayerNorm, Linear to ``adapter_attn_dim``, ReLU, Linear back, added to the block's output) and the CTC
head for that language's vocabulary (``lm_head``, whose size differs per language). :func:`load_adapter`
swaps them in, as Transformers' ``Wav2Vec2ForCTC.load_adapter(target_lang)`` does; the language's
vocabulary is the ``target_lang`` table of the checkpoint's nested vocab.json (Tokenizer.from_preset(...,
target_lang=...)). Adapter files saved in pickle formats (``adapter.<lang>.bin``) are refused.
"""

from __future__ import annotations

from pathlib import Path


from keras_models.errors import ConfigError, PresetError

ADAPTER_FILE = "adapter.{}.safetensors"


def available_languages(folder) -> list[str]:
    """The languages with an adapter file in ``folder``."""
    return sorted(p.name[len("adapter."):-len(".safetensors")] for p in Path(folder).glob("adapter.*.safetensors"))


def load_adapter(model, folder, target_lang: str):
    """Load ``target_lang``'s adapter weights (and, for a CTC model, its head) from ``folder`` into
    ``model`` (a Wav2Vec2 backbone or SpeechRecognizer). A language whose vocabulary size differs from the
    model's head needs a model built for it: ``SpeechRecognizer.from_preset(preset, target_lang=...)``."""
    from keras_models.presets.safetensors_io import CheckpointReader
    from keras_models.presets.weight_map import load_rules, mount

    backbone = getattr(model, "backbone", model)
    spec = backbone.spec
    if getattr(spec, "adapter_attn_dim", None) is None or not spec.do_stable_layer_norm:
        raise ConfigError(f"Cannot load the adapter for target_lang={target_lang!r}: this model has no adapter "
                          "layers (config.json adapter_attn_dim is not set, or do_stable_layer_norm is False)")
    folder = Path(folder)
    name = ADAPTER_FILE.format(target_lang)
    if not (folder / name).is_file():
        pickled = folder / f"adapter.{target_lang}.bin"
        extra = (f"; {pickled.name} exists but pickle files are not loaded (convert it to safetensors)"
                 if pickled.is_file() else "")
        raise PresetError(f"{folder} has no {name} for target_lang={target_lang!r} (adapters there: "
                          f"{', '.join(available_languages(folder)) or 'none'}){extra}")
    reader = CheckpointReader(folder, filename=name)
    rules = mount(backbone.adapter_rules(), backbone.base_model_prefix + ".")
    if hasattr(model, "lm_head"):
        if "lm_head.weight" not in reader.keys():
            raise PresetError(f"{folder / name} has no lm_head.weight: a CTC model needs the language's head")
        vocab_size = adapter_vocab_size(folder, target_lang)
        if vocab_size != model.vocab_size:
            raise ConfigError(
                f"{folder / name}: target_lang={target_lang!r} has a {vocab_size}-token CTC head, this model's has "
                f"{model.vocab_size}: load it with SpeechRecognizer.from_preset(preset, target_lang={target_lang!r})")
        rules += model.head_rules()
    load_rules(rules, reader, source=folder / name)
    model.target_lang = target_lang
    return model


def adapter_vocab_size(folder, target_lang) -> int | None:
    """The CTC vocabulary size of ``target_lang``'s adapter file (None when there is no such file)."""
    from keras_models.presets.safetensors_io import CheckpointReader

    path = Path(folder) / ADAPTER_FILE.format(target_lang)
    if not path.is_file():
        return None
    reader = CheckpointReader(folder, filename=path.name)
    return int(reader.shape("lm_head.weight")[0]) if "lm_head.weight" in reader.keys() else None


__all__ = ["ADAPTER_FILE", "adapter_vocab_size", "available_languages", "load_adapter"]
