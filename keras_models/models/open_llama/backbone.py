"""Open-Llama (``model_type`` open-llama, removed in Transformers 5): Llama as a spec of the shared
decoder, with two switches of its own:

* ``stable_embedding`` (config ``use_stable_embedding``): a LayerNorm (eps 1e-5, with bias) on the
  token embeddings, whatever the blocks' RMSNorm (``model.embed_layer_norm``);
* ``shared_input_output_embedding``: the LM head is the token embedding (no ``lm_head`` tensor).

Multi-head attention only (no ``num_key_value_heads``); ``rope_scaling`` in the old
``{"type", "factor"}`` form (linear or dynamic), read and written back in that form.
"""

from dataclasses import dataclass

import keras

from keras_models.layers.norms import make_norm
from keras_models.models.decoder.llama import NAMES, LlamaSpec, TableBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

STABLE_EMBEDDING_EPS = 1e-5  # nn.LayerNorm's default: the checkpoints' config has no key for it


@dataclass(frozen=True, kw_only=True)
class OpenLlamaSpec(LlamaSpec):
    """OpenLlamaConfig (Transformers 4.x) keys and defaults."""

    vocab_size: int = dim("vocab_size", 100000)
    num_kv_heads: int | None = const(None)
    head_dim: int | None = const(None)
    pad_token_id: int | None = hf("pad_token_id", 0)
    qkv_bias: bool = const(False)
    out_bias: bool = const(False)
    mlp_bias: bool = const(False)
    tie_word_embeddings: bool = hf("shared_input_output_embedding", True)
    stable_embedding: bool = hf("use_stable_embedding", True)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        # tie_word_embeddings ties a separate lm_head to the embeddings: the same logits
        values["tie_word_embeddings"] = bool(values.get("tie_word_embeddings", True)
                                             or config.get("tie_word_embeddings"))
        return values

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        for key in ("head_dim", "num_key_value_heads", "rope_parameters"):
            out.pop(key, None)
        out.update(tie_word_embeddings=False, rope_theta=self.rope_theta, rope_scaling=None)
        if self.rope_scaling:
            out["rope_scaling"] = {"type": self.rope_scaling["rope_type"], "factor": self.rope_scaling["factor"]}
        return out


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("open-llama")
class OpenLlamaBackbone(TableBackbone):
    spec_cls = OpenLlamaSpec
    hf_architecture = "OpenLlamaModel"
    hf_model_type = "open-llama"
    names = {**NAMES, "embed_norm": "embed_layer_norm"}

    def __init__(self, *args, stable_embedding=True, **options):
        super().__init__(*args, **options)
        self.stable_embedding = stable_embedding
        if stable_embedding:
            self.embedding_norm = make_norm("layer", STABLE_EMBEDDING_EPS, name="embedding_norm",
                                            dtype=self.dtype_policy)

    def get_config(self):
        config = super().get_config()
        config["stable_embedding"] = self.stable_embedding
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(OpenLlamaBackbone, "CausalLM", ("OpenLlamaForCausalLM",))
class OpenLlamaCausalLM(CausalLM):
    pass
