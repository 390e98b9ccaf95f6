"""Seq2SeqLM: an encoder-decoder backbone plus a vocabulary projection.

Inputs ``input_ids``, ``attention_mask``, ``decoder_input_ids``, ``decoder_attention_mask``;
returns logits (batch, decoder_seq, vocab). Named head fields: ``tie_word_embeddings`` (project
with the shared embedding table or an own ``lm_head``), ``scale_decoder_outputs`` (T5 v1.0
multiplies decoder states by d_model**-0.5 before a tied head), ``final_logits_bias`` (BART-likes'
buffer added to the logits).

Generation interface (used by keras_models.generation): ``encode``, ``init_cache``,
``call_decoder_with_cache`` and the special token ids ``decoder_start_token_id``,
``forced_bos_token_id``, ``forced_eos_token_id``, ``eos_token_id``, ``pad_token_id``.
"""

import keras
from keras import ops

from keras_models.generation.backend import project_onto_table

from keras_models.tasks.seq2seq_generation import Seq2SeqGenerationMixin
from keras_models.presets.weight_map import Reshape, Rule, TRANSPOSE
from keras_models.tasks.task import Task
from keras_models.tasks.text import TOKENIZER_FILES, sparse_ce

GENERATION_KEYS = ("decoder_start_token_id", "forced_bos_token_id", "forced_eos_token_id",
                   "eos_token_id", "pad_token_id", "bos_token_id")


def _output_vocab(backbone):
    return getattr(backbone, "output_vocab_size", backbone.vocab_size)


def _output_table(backbone):
    """The embedding layer a tied head projects with (the decoder's own table where it has one)."""
    return backbone.decoder_embedding() if hasattr(backbone, "decoder_embedding") else backbone.token_embedding


@keras.saving.register_keras_serializable(package="keras_models")
class Seq2SeqLM(Seq2SeqGenerationMixin, Task):
    task_name = "Seq2SeqLM"
    hf_lm_head = "lm_head.weight"
    hf_final_logits_bias = "final_logits_bias"
    hf_head_patterns = ("lm_head.*", "final_logits_bias")
    # Families whose config.json decides the T5 v1.0 output scaling set this to True.
    scales_decoder_outputs = False

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True,
                 scale_decoder_outputs=False, final_logits_bias=False, generation=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.tie_word_embeddings = tie_word_embeddings
        self.scale_decoder_outputs = scale_decoder_outputs
        self.use_final_logits_bias = final_logits_bias
        self.generation = dict(generation or {})
        b = backbone
        self.lm_head = None
        if not tie_word_embeddings:
            self.lm_head = keras.layers.Dense(
                _output_vocab(b), use_bias=False, name="lm_head", dtype=b.dtype_policy,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=b.initializer_range),
            )
            self.lm_head.build((None, b.hidden_size))
        self.final_logits_bias = None
        if final_logits_bias:
            self.final_logits_bias = self.add_weight(
                name="final_logits_bias", shape=(_output_vocab(b),), initializer="zeros",
                trainable=False,
            )

    # --- special tokens (config.json, then generation_config.json, then overrides) ----------------
    def _token(self, name):
        if name in self.generation:
            return self.generation[name]
        return getattr(self.backbone, name, None)

    decoder_start_token_id = property(lambda self: self._token("decoder_start_token_id"))
    forced_bos_token_id = property(lambda self: self._token("forced_bos_token_id"))
    forced_eos_token_id = property(lambda self: self._token("forced_eos_token_id"))
    eos_token_id = property(lambda self: self._token("eos_token_id"))
    pad_token_id = property(lambda self: self._token("pad_token_id"))
    bos_token_id = property(lambda self: self._token("bos_token_id"))

    # --- forward -------------------------------------------------------------------------------
    def project(self, hidden):
        if self.scale_decoder_outputs:
            hidden = hidden * ops.cast(self.backbone.hidden_size ** -0.5, hidden.dtype)
        if self.lm_head is not None:
            logits = self.lm_head(hidden)
        else:
            logits = project_onto_table(hidden, _output_table(self.backbone).embeddings)
        if self.final_logits_bias is not None:
            logits = logits + ops.cast(self.final_logits_bias, logits.dtype)
        return logits

    def call(self, inputs, training=False):
        return self.project(self.backbone(inputs, training=training)["last_hidden_state"])

    def encode(self, inputs):
        """Encoder states (batch, source_len, hidden) of ``inputs`` (a dict or input_ids)."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        return self.backbone.encode_inputs(inputs)

    def init_cache(self, batch_size, max_length, encoder_states=None):
        """Zeroed self-attention KV cache; with ``encoder_states`` the cross-attention K/V are
        computed once and stored too. See EncoderDecoderBackbone for the layout."""
        return self.backbone.init_cache(batch_size, max_length, encoder_states)

    def call_decoder_with_cache(self, decoder_input_ids, encoder_states, encoder_attention_mask,
                                cache, cache_index, decoder_attention_mask=None):
        hidden, cache = self.backbone.decode_with_cache(
            decoder_input_ids, encoder_states, encoder_attention_mask, cache, cache_index,
            decoder_attention_mask,
        )
        return self.project(hidden), cache

    # --- training defaults ---------------------------------------------------------------------
    def default_loss(self):  # next-token cross-entropy on the decoder; -100 labels ignored
        return sparse_ce(ignore_class=-100)

    def compile(self, optimizer="adam", loss="auto", metrics=None, **kwargs):
        if loss == "auto":
            loss = sparse_ce(ignore_class=-100)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # --- HF conversion ---------------------------------------------------------------------------
    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        tie = hf.get("tie_word_embeddings", True)
        kwargs.setdefault("tie_word_embeddings", tie)
        if cls.scales_decoder_outputs:
            kwargs.setdefault("scale_decoder_outputs", hf.get("scale_decoder_outputs", tie))
        kwargs.setdefault("final_logits_bias", cls.hf_final_logits_bias is not None)
        return kwargs

    def task_config_to_hf(self):
        c = {"tie_word_embeddings": self.tie_word_embeddings}
        if self.scales_decoder_outputs:
            c["scale_decoder_outputs"] = self.scale_decoder_outputs
        return c

    def head_rules(self):
        if self.lm_head is not None:
            r = [Rule(self.hf_lm_head, self.lm_head.kernel, TRANSPOSE, base=False)]
        else:
            r = [Rule(self.hf_lm_head, _output_table(self.backbone).embeddings, base=False,
                      optional=True, export=False)]
        if self.final_logits_bias is not None:
            r.append(Rule(self.hf_final_logits_bias, self.final_logits_bias, Reshape((1, -1), (-1,)),
                          base=False, optional=True))
        return r

    @classmethod
    def from_preset(cls, preset, *args, **kwargs):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        generation = kwargs.pop("generation", None)
        model = super().from_preset(preset, *args, **kwargs)
        folder = resolve_preset(preset)
        gen = read_json(folder / "generation_config.json", required=False) or {}
        model.generation = {k: gen[k] for k in GENERATION_KEYS if gen.get(k) is not None}
        model.generation.update(generation or {})
        return model

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, sequence_length=None, **_):
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            return None
        from keras_models.preprocessing.text import Seq2SeqPreprocessor
        from keras_models.tokenizers import Tokenizer

        start = hf.get("decoder_start_token_id")
        if start is None:
            start = hf.get("pad_token_id")
        return Seq2SeqPreprocessor(Tokenizer.from_preset(folder), sequence_length=sequence_length,
                                   decoder_start_token_id=start)

    def get_config(self):
        c = super().get_config()
        c.update(tie_word_embeddings=self.tie_word_embeddings,
                 scale_decoder_outputs=self.scale_decoder_outputs,
                 final_logits_bias=self.use_final_logits_bias, generation=self.generation)
        return c


__all__ = ["Seq2SeqLM"]
