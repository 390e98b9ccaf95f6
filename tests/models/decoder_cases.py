"""Tiny random Transformers decoder configs (odd on purpose) for the parity tests."""

SEQ = 10
VOCAB = 61


def _t():
    import transformers

    return transformers


def llama_gqa():
    t = _t()
    cfg = t.LlamaConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=6,
                        num_key_value_heads=2, intermediate_size=30, head_dim=6, rms_norm_eps=1e-5,
                        max_position_embeddings=64, attention_bias=True, mlp_bias=True,
                        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0})
    return t.LlamaForCausalLM(cfg)


def llama_tied_llama3():
    t = _t()
    cfg = t.LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                        num_key_value_heads=1, intermediate_size=20, head_dim=8,
                        tie_word_embeddings=True, max_position_embeddings=64,
                        rope_parameters={"rope_type": "llama3", "factor": 8.0, "rope_theta": 10000.0,
                                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 8})
    return t.LlamaForCausalLM(cfg)


def llama_yarn():
    t = _t()
    cfg = t.LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=32,
                        rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1000.0,
                                         "original_max_position_embeddings": 8})
    return t.LlamaForCausalLM(cfg)


def llama_dynamic():
    # max_position_embeddings < sequence: the NTK base grows inside the forward pass.
    t = _t()
    cfg = t.LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=6,
                        rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})
    return t.LlamaForCausalLM(cfg)


def llama_longrope():
    t = _t()
    cfg = t.LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=32,
                        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                         "original_max_position_embeddings": 8,
                                         "short_factor": [1.0, 1.5, 2.0, 3.0],
                                         "long_factor": [2.0, 3.0, 4.0, 6.0]})
    return t.LlamaForCausalLM(cfg)


def mistral_window():
    t = _t()
    cfg = t.MistralConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=20, sliding_window=3,
                          head_dim=6, max_position_embeddings=64)
    return t.MistralForCausalLM(cfg)


def qwen2_window():
    t = _t()
    cfg = t.Qwen2Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=20, use_sliding_window=True,
                        sliding_window=4, max_window_layers=1, max_position_embeddings=64,
                        tie_word_embeddings=True)
    return t.Qwen2ForCausalLM(cfg)


def mixtral_top2():
    t = _t()
    cfg = t.MixtralConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=12, num_local_experts=4,
                          num_experts_per_tok=2, max_position_embeddings=64)
    return t.MixtralForCausalLM(cfg)


CASES = {
    "llama_gqa": llama_gqa,
    "llama_tied_llama3": llama_tied_llama3,
    "llama_yarn": llama_yarn,
    "llama_dynamic": llama_dynamic,
    "llama_longrope": llama_longrope,
    "mistral_window": mistral_window,
    "qwen2_window": qwen2_window,
    "mixtral_top2": mixtral_top2,
}


def gemma_mqa():
    t = _t()
    cfg = t.GemmaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=8, intermediate_size=20,
                        max_position_embeddings=64, hidden_act="gelu")
    return t.GemmaForCausalLM(cfg)


def gemma2_softcap_window():
    t = _t()
    cfg = t.Gemma2Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, intermediate_size=20, sliding_window=3,
                         query_pre_attn_scalar=12, attn_logit_softcapping=0.5,
                         final_logit_softcapping=0.3, max_position_embeddings=64)
    return t.Gemma2ForCausalLM(cfg)


def phi_partial_qknorm():
    t = _t()
    cfg = t.PhiConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=20, qk_layernorm=True, max_position_embeddings=64,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                       "partial_rotary_factor": 0.5})
    return t.PhiForCausalLM(cfg)


def stablelm_parallel():
    t = _t()
    cfg = t.StableLmConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=20, use_qkv_bias=True,
                           use_parallel_residual=True, max_position_embeddings=64,
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                            "partial_rotary_factor": 0.25})
    return t.StableLmForCausalLM(cfg)


def stablelm_serial():
    t = _t()
    cfg = t.StableLmConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, intermediate_size=20, max_position_embeddings=64)
    return t.StableLmForCausalLM(cfg)


def starcoder2_window():
    t = _t()
    cfg = t.Starcoder2Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=20, sliding_window=4,
                             max_position_embeddings=64)
    return t.Starcoder2ForCausalLM(cfg)


CASES.update({
    "gemma_mqa": gemma_mqa,
    "gemma2_softcap_window": gemma2_softcap_window,
    "phi_partial_qknorm": phi_partial_qknorm,
    "stablelm_parallel": stablelm_parallel,
    "stablelm_serial": stablelm_serial,
    "starcoder2_window": starcoder2_window,
})


def gpt2():
    t = _t()
    cfg = t.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, n_positions=32, n_inner=24,
                       activation_function="gelu_new")
    return t.GPT2LMHeadModel(cfg)


def gpt_bigcode_mqa():
    t = _t()
    cfg = t.GPTBigCodeConfig(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, n_positions=32,
                             multi_query=True)
    return t.GPTBigCodeForCausalLM(cfg)


def gpt_bigcode_mha():
    t = _t()
    cfg = t.GPTBigCodeConfig(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                             multi_query=False, tie_word_embeddings=False)
    return t.GPTBigCodeForCausalLM(cfg)


def opt_project():
    t = _t()
    cfg = t.OPTConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                      ffn_dim=20, max_position_embeddings=32, word_embed_proj_dim=8, pad_token_id=0)
    return t.OPTForCausalLM(cfg)


def opt_postnorm():
    t = _t()
    cfg = t.OPTConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                      ffn_dim=20, max_position_embeddings=32, do_layer_norm_before=False,
                      pad_token_id=0, activation_function="gelu")
    return t.OPTForCausalLM(cfg)


def gpt_neox_parallel():
    t = _t()
    cfg = t.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=20, max_position_embeddings=64,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                           "partial_rotary_factor": 0.5})
    return t.GPTNeoXForCausalLM(cfg)


def gpt_neox_serial():
    t = _t()
    cfg = t.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=20, use_parallel_residual=False, max_position_embeddings=64,
                          tie_word_embeddings=False)
    return t.GPTNeoXForCausalLM(cfg)


def gptj_partial():
    t = _t()
    cfg = t.GPTJConfig(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64,
                       n_inner=24)
    return t.GPTJForCausalLM(cfg)


def falcon_new_arch_gqa():
    t = _t()
    cfg = t.FalconConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_kv_heads=2, new_decoder_architecture=True, bias=True, ffn_hidden_size=24,
                         max_position_embeddings=64)
    return t.FalconForCausalLM(cfg)


def falcon_mqa_parallel():
    t = _t()
    cfg = t.FalconConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         multi_query=True, parallel_attn=True, max_position_embeddings=64)
    return t.FalconForCausalLM(cfg)


def falcon_mha_serial():
    t = _t()
    cfg = t.FalconConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         multi_query=False, parallel_attn=False, bias=True, max_position_embeddings=64)
    return t.FalconForCausalLM(cfg)


def bloom_alibi():
    t = _t()
    cfg = t.BloomConfig(vocab_size=VOCAB, hidden_size=24, n_layer=2, n_head=6)
    return t.BloomForCausalLM(cfg)


CASES.update({
    "gpt2": gpt2,
    "gpt_bigcode_mqa": gpt_bigcode_mqa,
    "gpt_bigcode_mha": gpt_bigcode_mha,
    "opt_project": opt_project,
    "opt_postnorm": opt_postnorm,
    "gpt_neox_parallel": gpt_neox_parallel,
    "gpt_neox_serial": gpt_neox_serial,
    "gptj_partial": gptj_partial,
    "falcon_new_arch_gqa": falcon_new_arch_gqa,
    "falcon_mqa_parallel": falcon_mqa_parallel,
    "falcon_mha_serial": falcon_mha_serial,
    "bloom_alibi": bloom_alibi,
})


def gpt_neo_local():
    t = _t()
    cfg = t.GPTNeoConfig(vocab_size=VOCAB, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=20,
                         max_position_embeddings=32, attention_types=[[["local", "global"], 1]],
                         window_size=3)
    return t.GPTNeoForCausalLM(cfg)


def openai_gpt_postnorm():
    t = _t()
    cfg = t.OpenAIGPTConfig(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, n_positions=32)
    return t.OpenAIGPTLMHeadModel(cfg)


def persimmon_qknorm():
    t = _t()
    cfg = t.PersimmonConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=20, max_position_embeddings=64)
    return t.PersimmonForCausalLM(cfg)


def codegen_mp4():
    t = _t()
    cfg = t.CodeGenConfig(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                          rotary_dim=4, n_inner=24)
    return t.CodeGenForCausalLM(cfg)


def biogpt_scaled():
    t = _t()
    cfg = t.BioGptConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=20, max_position_embeddings=32)
    return t.BioGptForCausalLM(cfg)


CASES.update({
    "gpt_neo_local": gpt_neo_local,
    "openai_gpt_postnorm": openai_gpt_postnorm,
    "persimmon_qknorm": persimmon_qknorm,
    "codegen_mp4": codegen_mp4,
    "biogpt_scaled": biogpt_scaled,
})


def mpt_alibi_6heads():
    t = _t()
    cfg = t.MptConfig(d_model=24, n_layers=2, n_heads=6, vocab_size=VOCAB, max_seq_len=32,
                      expansion_ratio=2)
    return t.MptForCausalLM(cfg)


CASES["mpt_alibi_6heads"] = mpt_alibi_6heads


def xglm_sinusoidal():
    t = _t()
    cfg = t.XGLMConfig(d_model=16, num_layers=2, attention_heads=4, ffn_dim=20, vocab_size=VOCAB,
                       max_position_embeddings=32)
    return t.XGLMForCausalLM(cfg)


CASES["xglm_sinusoidal"] = xglm_sinusoidal


def ctrl_sinusoidal():
    t = _t()
    cfg = t.CTRLConfig(n_embd=16, n_layer=2, n_head=4, dff=20, vocab_size=VOCAB, n_positions=32,
                       layer_norm_epsilon=1e-5)
    return t.CTRLLMHeadModel(cfg)


CASES["ctrl_sinusoidal"] = ctrl_sinusoidal


def falcon_alibi():
    t = _t()
    cfg = t.FalconConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=6,
                         multi_query=False, parallel_attn=True, alibi=True, bias=True,
                         max_position_embeddings=64)
    return t.FalconForCausalLM(cfg)


CASES["falcon_alibi"] = falcon_alibi


def gpt_neox_japanese():
    t = _t()
    cfg = t.GPTNeoXJapaneseConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_multiple_size=2,
                                  max_position_embeddings=64,
                                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                   "partial_rotary_factor": 0.5})
    return t.GPTNeoXJapaneseForCausalLM(cfg)


CASES["gpt_neox_japanese"] = gpt_neox_japanese


def qwen3_window_bias():
    # head_dim 8 != hidden / heads; sliding on layer 1 only (max_window_layers=1), window < SEQ
    t = _t()
    cfg = t.Qwen3Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, intermediate_size=20, use_sliding_window=True,
                        sliding_window=4, max_window_layers=1, attention_bias=True,
                        max_position_embeddings=64, tie_word_embeddings=True,
                        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0})
    return t.Qwen3ForCausalLM(cfg)


def qwen3_moe_norm_topk():
    # 4 experts top-2 renormalised; layer 1 dense (mlp_only_layers); MQA, head_dim 6
    t = _t()
    cfg = t.Qwen3MoeConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=1, head_dim=6, intermediate_size=20, moe_intermediate_size=8,
                           num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, mlp_only_layers=[1],
                           max_position_embeddings=64)
    return t.Qwen3MoeForCausalLM(cfg)


def qwen2_moe_shared_window():
    # 4 experts top-2 not renormalised + gated shared expert on layer 1 (decoder_sparse_step=2);
    # layer 0 slides (window 4 < SEQ)
    t = _t()
    cfg = t.Qwen2MoeConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=20, moe_intermediate_size=8,
                           shared_expert_intermediate_size=12, num_experts=4, num_experts_per_tok=2,
                           norm_topk_prob=False, decoder_sparse_step=2, use_sliding_window=True,
                           sliding_window=4, max_window_layers=2, max_position_embeddings=64,
                           tie_word_embeddings=True)
    return t.Qwen2MoeForCausalLM(cfg)


def olmo_clip_qkv():
    t = _t()
    cfg = t.OlmoConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=20, clip_qkv=0.08, attention_bias=True,
                       max_position_embeddings=64, eos_token_id=2)
    return t.OlmoForCausalLM(cfg)


def olmo2_output_norms():
    t = _t()
    cfg = t.Olmo2Config(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=6,
                        num_key_value_heads=2, intermediate_size=20, max_position_embeddings=64,
                        eos_token_id=2, tie_word_embeddings=True,
                        rope_parameters={"rope_type": "linear", "factor": 3.0, "rope_theta": 10000.0})
    return t.Olmo2ForCausalLM(cfg)


def granite_multipliers():
    t = _t()
    cfg = t.GraniteConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=1, intermediate_size=20, embedding_multiplier=3.0,
                          residual_multiplier=0.5, attention_multiplier=0.3, logits_scaling=2.5,
                          mlp_bias=True, tie_word_embeddings=True, max_position_embeddings=64)
    return t.GraniteForCausalLM(cfg)


def phi3_window_partial():
    t = _t()
    cfg = t.Phi3Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=20, sliding_window=3,
                       max_position_embeddings=64, pad_token_id=0, eos_token_id=2,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                        "partial_rotary_factor": 0.5})
    return t.Phi3ForCausalLM(cfg)


def phi3_longrope():
    t = _t()
    cfg = t.Phi3Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=1, intermediate_size=20, max_position_embeddings=32,
                       original_max_position_embeddings=8, pad_token_id=0, eos_token_id=2,
                       rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                        "short_factor": [1.0, 1.5, 2.0, 3.0],
                                        "long_factor": [2.0, 3.0, 4.0, 6.0]})
    return t.Phi3ForCausalLM(cfg)


def cohere_parallel():
    t = _t()
    cfg = t.CohereConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=20, logit_scale=0.5, attention_bias=True,
                         max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    return t.CohereForCausalLM(cfg)


def smollm3_nope_window():
    # no_rope_layer_interval 2: layer 1 has no rope and slides (window 3)
    t = _t()
    cfg = t.SmolLM3Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=20, no_rope_layer_interval=2,
                          use_sliding_window=True, sliding_window=3, tie_word_embeddings=False,
                          max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return t.SmolLM3ForCausalLM(cfg)


CASES.update({
    "qwen3_window_bias": qwen3_window_bias,
    "qwen3_moe_norm_topk": qwen3_moe_norm_topk,
    "qwen2_moe_shared_window": qwen2_moe_shared_window,
    "olmo_clip_qkv": olmo_clip_qkv,
    "olmo2_output_norms": olmo2_output_norms,
    "granite_multipliers": granite_multipliers,
    "phi3_window_partial": phi3_window_partial,
    "phi3_longrope": phi3_longrope,
    "cohere_parallel": cohere_parallel,
    "smollm3_nope_window": smollm3_nope_window,
})


def gemma3_local_rope():
    # layer 0 slides (window 3 < SEQ) on its own rope table (theta 100); layer 1 is global with
    # linear-scaled rope; q/k norm, soft-capping, GQA, tied head
    t = _t()
    cfg = t.Gemma3TextConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=8, intermediate_size=20, sliding_window=3,
                             sliding_window_pattern=2, query_pre_attn_scalar=12, attn_logit_softcapping=0.5,
                             final_logit_softcapping=0.3, max_position_embeddings=64,
                             rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0,
                                                                 "rope_theta": 1000.0},
                                              "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})
    return t.Gemma3ForCausalLM(cfg)


def gpt_oss_sinks_window():
    # sinks; layer 0 slides (window 3); 4 stacked experts top-2 with a clamp that bites (limit 0.08);
    # yarn rope (truncate False); GQA; untied head
    t = _t()
    cfg = t.GptOssConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, intermediate_size=12, num_local_experts=4,
                         num_experts_per_tok=2, sliding_window=3, swiglu_limit=0.08, swiglu_alpha=1.5,
                         max_position_embeddings=64,
                         rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1000.0,
                                          "beta_fast": 8.0, "beta_slow": 1.0, "truncate": False,
                                          "original_max_position_embeddings": 16})
    return t.GptOssForCausalLM(cfg)


def deepseek_v2_mla_groups():
    # q_lora_rank None; yarn with mscale_all_dim (softmax scale changes); layer 0 dense, layer 1 MoE
    # with group-limited greedy routing (2 groups, 1 kept), routed scale, shared expert
    t = _t()
    cfg = t.DeepseekV2Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=20, moe_intermediate_size=8, n_routed_experts=4,
                             num_experts_per_tok=2, n_group=2, topk_group=1, topk_method="group_limited_greedy",
                             routed_scaling_factor=1.5, first_k_dense_replace=1, n_shared_experts=1,
                             q_lora_rank=None, kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4,
                             v_head_dim=6, max_position_embeddings=64,
                             rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1000.0,
                                              "original_max_position_embeddings": 16, "mscale": 0.8,
                                              "mscale_all_dim": 0.8})
    return t.DeepseekV2ForCausalLM(cfg)


def deepseek_v3_mla_sigmoid():
    # q_lora_rank 12, half-split rope (rope_interleave False); sigmoid routing with a nonzero
    # correction bias, top-2-sum group scores, renormalised top-2 x 2.5; tied head
    import torch

    t = _t()
    cfg = t.DeepseekV3Config(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=20, moe_intermediate_size=8, n_routed_experts=4,
                             num_experts_per_tok=2, n_group=2, topk_group=1, first_k_dense_replace=1,
                             n_shared_experts=2, q_lora_rank=12, kv_lora_rank=8, qk_nope_head_dim=4,
                             qk_rope_head_dim=4, v_head_dim=6, rope_interleave=False,
                             max_position_embeddings=64, tie_word_embeddings=True)
    model = t.DeepseekV3ForCausalLM(cfg)
    with torch.no_grad():
        model.model.layers[1].mlp.gate.e_score_correction_bias.normal_(0.0, 0.05)
    return model


CASES.update({
    "gemma3_local_rope": gemma3_local_rope,
    "gpt_oss_sinks_window": gpt_oss_sinks_window,
    "deepseek_v2_mla_groups": deepseek_v2_mla_groups,
    "deepseek_v3_mla_sigmoid": deepseek_v3_mla_sigmoid,
})


def llama4_chunked_moe():
    # layer 0: rope (interleaved pairs, llama3 scaling), weightless q/k norm after rope, chunks of 4
    # (< SEQ), dense MLP of intermediate_size_mlp; layer 1: NoPE, full attention, temperature
    # tuning (a no-op below floor_scale, see test_llama4.py), 4 stacked experts top-2 scaling the
    # experts' inputs + a shared expert; GQA; untied head
    t = _t()
    cfg = t.Llama4TextConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=8, intermediate_size=12, intermediate_size_mlp=20,
                             num_local_experts=4, num_experts_per_tok=2, interleave_moe_layer_step=2,
                             no_rope_layer_interval=2, attention_chunk_size=4, max_position_embeddings=64,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2,
                             rope_parameters={"rope_type": "llama3", "factor": 8.0, "rope_theta": 10000.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 8})
    return t.Llama4ForCausalLM(cfg)


CASES["llama4_chunked_moe"] = llama4_chunked_moe
