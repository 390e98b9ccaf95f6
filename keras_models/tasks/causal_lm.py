"""CausalLM: a decoder backbone + language-model head, with the fixed-size KV-cache interface the
generation engine drives.

    logits = model({"input_ids", "attention_mask"})            # (batch, seq, vocab)
    cache = model.init_cache(batch_size, max_length)
    logits, cache = model.call_with_cache(input_ids, cache, cache_index, attention_mask)

``attention_mask`` in ``call_with_cache`` spans the whole cache buffer (batch, max_length); the
model derives position ids (cumsum(mask) - 1) and the causal / padding / sliding-window bias from
it, so left-padded prompts give the same logits as unpadded ones. Everything is keras.ops and
traceable under jax.jit / tf.function.

Families subclass this and set ``hf_lm_head``; the head is the tied token embedding or its own
Linear (``tie_word_embeddings``, ``lm_head_bias`` and ``final_logit_softcap`` are backbone
options read from config.json).
"""

import keras
from keras import ops

from keras_models.generation.backend import project_onto_table

from keras_models.generation.mixin import GenerationMixin
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.task import Task
from keras_models.tasks.text import _text_preprocessor, _with_pre, sparse_ce


class _GenerationSlot:
    """Placeholder base: the generation engine (keras_models/generation/) provides ``generate``
    through a mixin added to CausalLM's bases."""


@keras.saving.register_keras_serializable(package="keras_models")
class CausalLM(GenerationMixin, Task, _GenerationSlot):
    task_name = "CausalLM"
    hf_lm_head = "lm_head"
    hf_head_patterns = ("lm_head.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        o = backbone.options
        self.tied = bool(o["tie_word_embeddings"])
        self.final_logit_softcap = o["final_logit_softcap"]
        self.lm_head = None
        self.lm_bias = None
        if not self.tied:
            self.lm_head = keras.layers.Dense(  # a backbone may name a head wider or narrower than its table
                getattr(backbone, "output_vocab_size", backbone.vocab_size), use_bias=bool(o["lm_head_bias"]),
                name="lm_head",
                dtype=backbone.dtype_policy,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=o["initializer_range"]),
            )

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        if self.lm_head is not None:
            width = self.backbone.options["embed_proj_dim"] or self.backbone.hidden_size
            self.lm_head.build((None, None, width))
        elif self.backbone.options["lm_head_bias"]:  # tied weight, own bias (CTRL)
            self.lm_bias = self.add_weight(name="lm_head_bias", shape=(self.backbone.vocab_size,),
                                           initializer="zeros")
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _text_preprocessor(folder, hf, "CausalLMPreprocessor", **_with_pre(kw))

    def logits(self, hidden):
        if self.tied:
            emb = self.backbone.token_embedding.embeddings
            out = project_onto_table(hidden, emb)
            if self.lm_bias is not None:
                out = out + ops.cast(self.lm_bias, out.dtype)
        else:
            out = self.lm_head(hidden)
        scale = self.backbone.options.get("logit_scale")
        if scale is not None:  # Granite's 1 / logits_scaling, Cohere's logit_scale
            out = out * ops.cast(scale, out.dtype)
        if self.final_logit_softcap is not None:
            cap = self.final_logit_softcap
            out = ops.tanh(out / cap) * cap
        return out

    def call(self, inputs, training=False):
        return self.logits(self.backbone(inputs, training=training))

    def default_loss(self):
        """Next-token cross-entropy. On raw text the preprocessor gives (inputs, next tokens,
        weights) with weight 0 on padding and, for ``fit(prompts, responses)``, on the prompt:
        Transformers' labels of -100. Labels passed by hand may use -100 too."""
        return sparse_ce(ignore_class=-100)

    # --- generation interface ----------------------------------------------------------------
    def init_cache(self, batch_size, max_length):
        return self.backbone.init_cache(batch_size, max_length)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False):
        """Logits (batch, t, vocab) of ``input_ids`` written at ``cache_index``, and the cache;
        ``last_only``: only the last position's logits (batch, 1, vocab), as a prefill needs."""
        hidden, cache = self.backbone.call_with_cache(input_ids, cache, cache_index, attention_mask)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), cache

    # (generate: provided by keras_models/generation/ -- see _GenerationSlot above.)

    # --- HF conversion -----------------------------------------------------------------------
    def head_rules(self):
        name = self.hf_lm_head
        if self.tied:
            r = [Rule(f"{name}.weight", self.backbone.token_embedding.embeddings, base=False,
                      optional=True, export=False)]
            if self.lm_bias is not None:
                r.append(Rule(f"{name}.bias", self.lm_bias, base=False))
            return r
        r = [Rule(f"{name}.weight", self.lm_head.kernel, TRANSPOSE, base=False)]
        if self.lm_head.use_bias:
            r.append(Rule(f"{name}.bias", self.lm_head.bias, base=False))
        return r
