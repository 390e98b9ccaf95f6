"""FSMT (fairseq WMT19 translation): a post-norm BART-like model with separate source and target
vocabularies (``vocab_size`` / ``decoder_vocab_size``, own ``embed_tokens`` tables), padding-aware
fairseq sinusoidal positions, scaled embeddings, no embedding norm, and an untied
``decoder.output_projection`` head by default. With ``tie_word_embeddings`` Transformers ties the
encoder table and the head to the decoder table: one shared table of the target vocabulary.
"""

from dataclasses import replace

import keras

from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.families import config_from_hf as bart_config_from_hf
from keras_models.models.bart.families import config_to_hf as bart_config_to_hf
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.config import require
from keras_models.presets.weight_map import Rule
from keras_models.tasks.seq2seq_lm import Seq2SeqLM

_ser = keras.saving.register_keras_serializable(package="keras_models")
_FSMT_DEFAULTS = {"activation_function": "relu", "scale_embedding": True, "pad_token_id": 1,
                  "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2}


@_ser
@register_backbone("fsmt")
class FSMTBackbone(BartBackbone):
    base_model_prefix = "model"
    hf_architecture = "FSMTModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, langs=("en", "de"), position_embedding="sinusoidal_fairseq",
                 position_offset=0, padding_aware_positions=True, embedding_norm=False,
                 scale_embedding=True, hf_model_type="fsmt", **kwargs):
        super().__init__(*args, position_embedding=position_embedding, position_offset=position_offset,
                         padding_aware_positions=padding_aware_positions, embedding_norm=embedding_norm,
                         scale_embedding=scale_embedding, hf_model_type=hf_model_type, **kwargs)
        self.langs = list(langs)
        self.hf_architecture = "FSMTModel"

    @classmethod
    def config_from_hf(cls, hf):
        c = bart_config_from_hf({**_FSMT_DEFAULTS, **hf, "model_type": "m2m_100",
                                 "vocab_size": require(hf, "src_vocab_size")})
        c.update(norm_first=False, final_norm=False, position_offset=0, hf_model_type="fsmt",
                 decoder_vocab_size=require(hf, "tgt_vocab_size"), langs=hf.get("langs", ["en", "de"]))
        if hf.get("tie_word_embeddings", False):  # one table: the decoder's
            c.update(vocab_size=c.pop("decoder_vocab_size"))
        return c

    def config_to_hf(self):
        c = bart_config_to_hf(self)
        c.pop("vocab_size")
        c.update(model_type="fsmt", architectures=[self.hf_architecture], langs=self.langs,
                 src_vocab_size=self.vocab_size, tgt_vocab_size=self.output_vocab_size)
        return c

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
