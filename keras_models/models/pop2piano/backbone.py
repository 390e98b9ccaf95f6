"""Pop2Piano: a T5 (gated feed-forward, relative position buckets) whose encoder reads
``input_features`` (batch, frames, d_model) as its embeddings, plus a composer table
(``mel_conditioner``) whose row is prepended to the features by ``generate``.

Transformers' forward takes the features as they come (no composer row); its ``generate`` picks
the row ``composer_to_feature_token[composer] - min(composer_to_feature_token.values())``
(generation_config.json), puts it first, zeroes every batch row whose attention mask starts with
0 and repeats the mask's first column. The LM head is an own ``lm_head`` (never tied to
``shared``); ``scale_decoder_outputs`` (else ``tie_word_embeddings``) decides the T5 v1.0
d_model**-0.5 output scaling.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.generation.config import GenerationConfig, GenerationError
from keras_models.generation.mixin import GenerationMixin
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.t5.backbone import T5Backbone, T5Spec
from keras_models.models.t5.tasks import T5Seq2SeqLM
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class Pop2PianoSpec(T5Spec):
    feed_forward_proj: ClassVar[str | None] = "gated-gelu"
    vocab_size: int = dim("vocab_size", 2400)
    composer_vocab_size: int = dim("composer_vocab_size", 21)
    hidden_act: str = hf("dense_act_fn", "relu", doc="Pop2Piano's default stays relu for gated-gelu")
    gated_ffn: bool = hf("is_gated_act", True, doc="read from feed_forward_proj")
    hf_model_type: str = const("pop2piano")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        if config.get("dense_act_fn") is None:  # unlike T5, no gelu_new for gated-gelu
            values["hidden_act"] = "relu"
        if values.get("composer_vocab_size", 21) < 1:
            raise ConfigError(f"{source}: composer_vocab_size must be >= 1, "
                              f"got {values['composer_vocab_size']!r}")
        return values

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        out["dense_act_fn"] = self.hidden_act
        out.pop("feed_forward_proj", None)
        out["feed_forward_proj"] = ("gated-" if self.gated_ffn else "") + (
            "gelu" if self.gated_ffn else self.hidden_act)
        return out


@_ser
@register_backbone("pop2piano")
class Pop2PianoBackbone(T5Backbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` of ``{"input_features" (batch,
    frames, d_model), "attention_mask", "decoder_input_ids", "decoder_attention_mask"}``."""

    verified_backends = ("jax", "torch", "tensorflow")  # tests/audio/test_pop2piano.py
    checkpoint_families = ()
    hf_architecture = "Pop2PianoForConditionalGeneration"
    spec_cls = Pop2PianoSpec

    def __init__(self, *args, composer_vocab_size=21, hf_model_type="pop2piano", **kwargs):
        super().__init__(*args, hf_model_type=hf_model_type, **kwargs)
        self.composer_vocab_size = composer_vocab_size
        self.composer_embedding = keras.layers.Embedding(
            composer_vocab_size, self.hidden_size, name="composer_embedding", dtype=self.dtype_policy,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=self.initializer_range))
        self.composer_embedding.build((None,))

    def embed_encoder(self, input_features, training=False):
        x = ops.cast(input_features, self.compute_dtype)
        if len(x.shape) != 3 or (x.shape[-1] is not None and x.shape[-1] != self.hidden_size):
            raise ValueError(f"input_features must be (batch, frames, {self.hidden_size}), got {x.shape}")
        return self.embedding_dropout(x, training=training)

    def encode_inputs(self, inputs, training=False):
        return self.encode(inputs["input_features"], inputs.get("attention_mask"), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "input_features" not in inputs or "decoder_input_ids" not in inputs:
            raise ValueError("Pop2PianoBackbone needs a dict with 'input_features' and 'decoder_input_ids'")
        enc = self.encode_inputs(inputs, training=training)
        dec = self.decode(inputs["decoder_input_ids"], enc, inputs.get("attention_mask"),
                          inputs.get("decoder_attention_mask"), training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    def dummy_inputs(self):
        ones = np.ones((1, 2), "int32")
        return {"input_features": np.zeros((1, 2, self.hidden_size), "float32"), "attention_mask": ones,
                "decoder_input_ids": ones, "decoder_attention_mask": ones}

    def condition(self, input_features, composer_index, attention_mask=None):
        """Transformers' generate-time conditioning: the composer row first; with a mask, batch rows
        whose mask starts with 0 zeroed and the mask's first column repeated. -> (features, mask)."""
        feats = ops.cast(ops.convert_to_tensor(input_features), self.compute_dtype)
        b = ops.shape(feats)[0]
        row = ops.cast(self.composer_embedding.embeddings[composer_index], feats.dtype)
        feats = ops.concatenate([ops.broadcast_to(row[None, None], (b, 1, self.hidden_size)), feats], axis=1)
        if attention_mask is None:
            return feats, None
        mask = ops.cast(ops.convert_to_tensor(attention_mask), "int32")
        keep = ops.cast(mask[:, :1], feats.dtype)[:, :, None]
        return feats * keep, ops.concatenate([mask[:, :1], mask], axis=1)

    def weight_rules(self):
        return super().weight_rules() + [Rule("mel_conditioner.embedding.weight",
                                              self.composer_embedding.embeddings)]

    def get_config(self):
        config = super().get_config()
        config["composer_vocab_size"] = self.composer_vocab_size
        return config


@_ser
@register_task(Pop2PianoBackbone, "Seq2SeqLM", ("Pop2PianoForConditionalGeneration",))
class Pop2PianoSeq2SeqLM(T5Seq2SeqLM):
    """Pop2PianoForConditionalGeneration: logits (batch, decoder_seq, vocab) of ``{"input_features",
    "attention_mask", "decoder_input_ids", ...}``; ``generate(input_features, attention_mask=None,
    composer="composer1", ...)`` as Transformers' (composer row prepended, then the decoder start
    token followed by the new ids)."""

    hf_head_patterns = ("lm_head.*",)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", False)  # lm_head is its own weight
        kwargs.setdefault("scale_decoder_outputs", hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)))
        kwargs.setdefault("final_logits_bias", False)
        return kwargs

    def task_config_to_hf(self):
        if self.tie_word_embeddings:
            raise ConfigError("Pop2Piano exports an own lm_head: tie_word_embeddings must be False")
        # Transformers reads tie_word_embeddings as the decoder output scaling switch
        return {"tie_word_embeddings": self.scale_decoder_outputs,
                "scale_decoder_outputs": self.scale_decoder_outputs}

    def composer_table(self, generation_config=None):
        gen = generation_config if generation_config is not None else self.generation_config
        if isinstance(gen, dict):
            table = gen.get("composer_to_feature_token")
        else:
            table = getattr(gen, "ignored", {}).get("composer_to_feature_token") if gen is not None else None
        if not table:
            raise GenerationError("generate: composer_to_feature_token was not found in generation_config.json")
        if len(table) != self.backbone.composer_vocab_size:
            raise GenerationError(f"generate: composer_to_feature_token has {len(table)} composers but "
                                  f"config.json composer_vocab_size is {self.backbone.composer_vocab_size}")
        return table

    def generate(self, input_features=None, attention_mask=None, composer="composer1", generation_config=None,
                 *, decoder_input_ids=None, tokenizer=None, **kwargs):
        if isinstance(input_features, dict):
            attention_mask = input_features.get("attention_mask", attention_mask)
            input_features = input_features.get("input_features")
        if input_features is None:
            raise GenerationError("generate: Pop2Piano needs input_features (batch, frames, d_model)")
        table = self.composer_table(generation_config)
        if composer not in table:
            raise GenerationError(f"generate: composer {composer!r} is not one of {sorted(table)}")
        feats = np.asarray(ops.convert_to_numpy(input_features), "float32")
        if feats.ndim == 2:
            feats = feats[None]
        mask = None if attention_mask is None else np.asarray(ops.convert_to_numpy(attention_mask)).reshape(
            feats.shape[0], -1)
        index = int(table[composer]) - min(int(v) for v in table.values())
        feats, mask = self.backbone.condition(feats, index, mask)
        if mask is None:
            mask = ops.ones(ops.shape(feats)[:2], "int32")
        base = generation_config if generation_config is not None else self.generation_config
        if isinstance(base, dict):
            base = GenerationConfig().update(_source="generation_config", _lenient=True, **base)
        start = kwargs.pop("decoder_start_token_id", None)
        if start is None and base is not None and "decoder_start_token_id" in base.explicit:
            start = base.decoder_start_token_id
        if start is None:
            start = self.decoder_start_token_id
        batch = feats.shape[0]
        if decoder_input_ids is None:
            decoder_input_ids = np.full((batch, 1), start, "int32")
        states = self.backbone.encode(feats, mask)
        self._gen_encoder = (states, ops.convert_to_tensor(mask), np.zeros((batch, 1), "int32"))
        try:
            return GenerationMixin.generate(self, {"input_ids": np.asarray(decoder_input_ids, "int32")}, base,
                                            tokenizer=tokenizer, **kwargs)
        finally:
            self._gen_encoder = None

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, sequence_length=None, **_):
        return None  # Pop2PianoTokenizer (MIDI events) / feature extractor: not yet

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        gen = self.generation_config
        table = getattr(gen, "ignored", {}).get("composer_to_feature_token") if gen is not None else None
        if table:
            import json
            from pathlib import Path

            path = Path(folder) / "generation_config.json"
            data = json.loads(path.read_text()) if path.exists() else {}
            data["composer_to_feature_token"] = table
            path.write_text(json.dumps(data, indent=2) + "\n")


__all__ = ["Pop2PianoBackbone", "Pop2PianoSeq2SeqLM", "Pop2PianoSpec"]
