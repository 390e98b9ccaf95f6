"""GPTSAN-japanese's CausalLM (Transformers' GPTSanJapaneseForConditionalGeneration): logits over
the tied token table plus ``final_logits_bias``; ``generate`` takes the prompt's
``token_type_ids`` (its prefix) and a ``spout`` in the inputs dict, as Transformers does. Text goes
through ``km.Tokenizer.from_preset`` (GPTSanJapaneseTokenizer, whose output has the token types)
first: this task has no preprocessor for raw strings."""

import keras
from keras import ops

from keras_models.generation.backend import project_onto_table
from keras_models.generation.decode import CausalDecoder
from keras_models.models.gptsan_japanese.backbone import GPTSanJapaneseBackbone
from keras_models.models.registry import register_task
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.tasks.causal_lm import CausalLM


class GPTSanJapaneseDecoder(CausalDecoder):
    """The engine's decoder interface: the prompt's token types and spout ride in ``extra`` (a
    one-token step's own token type has no effect: it sees every earlier key anyway)."""

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        extra = extra or {}
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only,
                                          token_type_ids=extra.get("token_type_ids"), spout=extra.get("spout"))


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(GPTSanJapaneseBackbone, "CausalLM", ("GPTSanJapaneseForConditionalGeneration",))
class GPTSanJapaneseCausalLM(CausalLM):
    """Logits (batch, seq, vocab) of ``{"input_ids", "attention_mask", "token_type_ids", "spout"}``."""

    hf_head_patterns = ("lm_head.*", "final_logits_bias")
    decoder_adapter = GPTSanJapaneseDecoder

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.final_logits_bias = self.add_weight(name="final_logits_bias", shape=(self.backbone.vocab_size,),
                                                 initializer="zeros")
        self.built = True

    def logits(self, hidden):
        out = project_onto_table(hidden, self.backbone.token_embedding.embeddings)
        return out + ops.cast(self.final_logits_bias, out.dtype)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        """None: GPTSanJapaneseTokenizer (``km.Tokenizer.from_preset``) is a standalone python
        tokenizer that the shared text preprocessors do not drive; ``generate`` takes its ids."""
        return None

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False, token_type_ids=None,
                        spout=None):
        hidden, cache = self.backbone.call_with_cache(input_ids, cache, cache_index, attention_mask,
                                                      token_type_ids=token_type_ids, spout=spout)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), cache

    def generate(self, inputs=None, generation_config=None, **kwargs):
        """Transformers' ``generate``; a dict's ``token_type_ids`` (the prompt's prefix: seen by
        every prompt position) and ``spout`` (batch, d_spout) condition the whole generation."""
        extra = {}
        if isinstance(inputs, dict):
            inputs = dict(inputs)
            for key in ("token_type_ids", "spout"):
                if inputs.get(key) is not None:
                    extra[key] = ops.convert_to_tensor(inputs.pop(key), "float32" if key == "spout" else "int32")
                inputs.pop(key, None)
        if not extra:
            return super().generate(inputs, generation_config, **kwargs)
        with self._gen_prompt_inputs(**extra):
            return super().generate(inputs, generation_config, **kwargs)

    def head_rules(self):
        v = self.backbone.vocab_size
        return [Rule("lm_head.weight", self.backbone.token_embedding.embeddings, base=False, optional=True,
                     export=False),
                Rule("final_logits_bias", self.final_logits_bias, Reshape((1, v), (v,)), base=False)]


__all__ = ["GPTSanJapaneseCausalLM", "GPTSanJapaneseDecoder"]
