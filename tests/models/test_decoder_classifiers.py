"""Decoder TextClassifier (score on the last non-pad token) against Transformers'
<Family>ForSequenceClassification, with right- and left-padded rows."""

import numpy as np
import pytest

import keras_models as km
from tests.models import decoder_cases as dc
from tests.parity import assert_backbone_close, assert_close, hf_reference, to_numpy

# a representative subset of families (the heads are the same generic class for all)
FAMILIES = {
    "llama": ("Llama", "LlamaConfig", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                           num_key_value_heads=2, intermediate_size=20)),
    "gpt2": ("GPT2", "GPT2Config", dict(n_embd=16, n_layer=1, n_head=4, n_positions=32)),
    "opt": ("OPT", "OPTConfig", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                     ffn_dim=20, max_position_embeddings=32, word_embed_proj_dim=8)),
    "bloom": ("Bloom", "BloomConfig", dict(hidden_size=16, n_layer=1, n_head=4)),
    # fused qkv / gate_up projections; MoE with a gated shared expert; non-parametric LayerNorm
    "phi3": ("Phi3", "Phi3Config", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=20, eos_token_id=2)),
    "qwen2_moe": ("Qwen2Moe", "Qwen2MoeConfig", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                                     num_key_value_heads=2,
                                                     intermediate_size=20, moe_intermediate_size=8,
                                                     shared_expert_intermediate_size=12, num_experts=4,
                                                     num_experts_per_tok=2)),
    "olmo": ("Olmo", "OlmoConfig", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                        intermediate_size=20, clip_qkv=0.08, eos_token_id=2)),
    # q/k norm + two rope tables; attention sinks + stacked experts; latent attention + sigmoid routing
    "gemma3_text": ("Gemma3Text", "Gemma3TextConfig", dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                                          num_key_value_heads=2, head_dim=8, intermediate_size=20,
                                                          sliding_window=3, sliding_window_pattern=2)),
    "gpt_oss": ("GptOss", "GptOssConfig", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                               num_key_value_heads=2, head_dim=8, intermediate_size=12,
                                               num_local_experts=4, num_experts_per_tok=2, sliding_window=3)),
    "deepseek_v3": ("DeepseekV3", "DeepseekV3Config", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                                           intermediate_size=20, moe_intermediate_size=8,
                                                           n_routed_experts=4, num_experts_per_tok=2, n_group=2,
                                                           topk_group=1, first_k_dense_replace=0, q_lora_rank=12,
                                                           kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4,
                                                           v_head_dim=6)),
}


def _build(family):
    import transformers

    prefix, config, kw = FAMILIES[family]
    cfg = getattr(transformers, config)(vocab_size=dc.VOCAB, pad_token_id=0, num_labels=3, **kw)
    return getattr(transformers, prefix + "ForSequenceClassification")(cfg)


def _inputs():
    rng = np.random.RandomState(2)
    ids = rng.randint(3, dc.VOCAB, size=(3, 8)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, 5:], mask[1, 5:] = 0, 0  # right padding
    ids[2, :2], mask[2, :2] = 0, 0  # left padding
    # Transformers' GPT-2 forward defaults to arange positions; give both sides the mask-derived
    # ones (what generation uses) so left padding is comparable for learned positions too.
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_text_classifier_parity(family):
    inputs = _inputs()
    folder, expected = hf_reference(f"deccls-{family}", lambda: _build(family), inputs)
    model = km.TextClassifier.from_preset(folder)
    assert model.head_from_checkpoint and model.num_classes == 3
    assert_close(to_numpy(model(inputs)), expected["logits"], what=f"{family} TextClassifier")
    assert_backbone_close(model, inputs, expected, mask=inputs["attention_mask"], what=f"{family} TextClassifier")
