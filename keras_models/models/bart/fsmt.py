"""FSMT (fairseq WMT19 translation): a post-norm BART-like model with separate source and target
vocabularies (``vocab_size`` / ``decoder_vocab_size``, own ``embed_tokens`` tables), padding-aware
fairseq sinusoidal positions, scaled embeddings, no embedding norm, and an untied
``decoder.output_projection`` head by default. With ``tie_word_embeddings`` Transformers ties the
encoder table and the head to the decoder table: one shared table of the target vocabulary.
"""

from dataclasses import dataclass, replace
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.families import BartSpec
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf
from keras_models.tasks.seq2seq_lm import Seq2SeqLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class FSMTSpec(BartSpec):
    architecture: ClassVar[str] = "FSMTModel"
    vocab_size: int = dim("src_vocab_size", doc="with tie_word_embeddings: tgt_vocab_size (one table)")
    decoder_vocab_size: int | None = hf("tgt_vocab_size", None, dim=True, doc="None: one shared table")
    langs: tuple = hf("langs", ("en", "de"))
    hidden_act: str = hf("activation_function", "relu")
    scale_embedding: bool = hf("scale_embedding", True)
    hf_model_type: str = const("fsmt")
    position_embedding: str = const("sinusoidal_fairseq")
    position_offset: int = const(0)
    padding_aware_positions: bool = const(True)
    embedding_norm: bool = const(False)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        if "decoder_vocab_size" not in values:
            raise ConfigError(f"{source}: required key 'tgt_vocab_size' is missing")
        if config.get("tie_word_embeddings", False):  # one table: the decoder's
            values["vocab_size"] = values.pop("decoder_vocab_size")
        return values

    def adjust_to_hf(self, out):
        out["tgt_vocab_size"] = self.decoder_vocab_size or self.vocab_size
        return super().adjust_to_hf(out)


@_ser
@register_backbone("fsmt")
class FSMTBackbone(BartBackbone):
    base_model_prefix = "model"
    hf_architecture = "FSMTModel"
    spec_cls = FSMTSpec
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, langs=("en", "de"), position_embedding="sinusoidal_fairseq",
                 position_offset=0, padding_aware_positions=True, embedding_norm=False,
                 scale_embedding=True, hf_model_type="fsmt", **kwargs):
        super().__init__(*args, position_embedding=position_embedding, position_offset=position_offset,
                         padding_aware_positions=padding_aware_positions, embedding_norm=embedding_norm,
                         scale_embedding=scale_embedding, hf_model_type=hf_model_type, **kwargs)
        self.langs = list(langs)
        self.hf_architecture = "FSMTModel"

    def weight_rules(self):
        tables = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
        # FSMT checkpoints store their (fixed) position tables: written back on export too
        r = [replace(rule, export=True) if rule.hf.endswith("embed_positions.weight") else rule
             for rule in super().weight_rules() if rule.hf not in tables]
        shared = self.decoder_token_embedding is None
        return [Rule("encoder.embed_tokens.weight", self.token_embedding.embeddings, optional=shared,
                     export=not shared),
                Rule("decoder.embed_tokens.weight", self.decoder_embedding().embeddings)] + r

    def get_config(self):
        config = super().get_config()
        config["langs"] = list(self.langs)
        return config


@_ser
@register_task(FSMTBackbone, "Seq2SeqLM", ("FSMTForConditionalGeneration",))
class FSMTSeq2SeqLM(Seq2SeqLM):
    hf_lm_head = "model.decoder.output_projection.weight"
    hf_final_logits_bias = None
    hf_head_patterns = ("model.decoder.output_projection.*",)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", hf.get("tie_word_embeddings", False))
        return super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)


__all__ = ["FSMTBackbone", "FSMTSeq2SeqLM"]
