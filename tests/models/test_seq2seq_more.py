"""More encoder-decoder families (LED, ...): logits with padded inputs and greedy / beam generate
against tiny random Transformers models, on the helpers of test_seq2seq_parity / _generate."""

import inspect

import numpy as np
import pytest

import keras_models as km
from tests.models.test_seq2seq_generate import SETTINGS, generate_reference
from tests.models.test_seq2seq_parity import SRC, VOCAB, _bart_like, seq2seq_inputs
from tests.parity import assert_backbone_close, assert_close, hf_reference


# --- LED: BART with Longformer local + global attention in the encoder ---------------------------
def _led(cls="LEDForConditionalGeneration", **kw):
    base = dict(max_encoder_position_embeddings=40, max_decoder_position_embeddings=24,
                attention_window=[4, 6])  # one-sided windows 2 and 3: smaller than the input (9)
    base.update(kw)
    return _bart_like(cls, "LEDConfig", **base)


def _global_mask(inputs):
    g = np.zeros_like(inputs["input_ids"])
    g[:, 0] = 1
    g[0, 6] = 1
    g[1, SRC - 1] = 1  # on a padding token: never global
    return g


def _pegasus_x(**kw):
    base = dict(block_size=4, num_global_tokens=3, stagger_local_blocks=True)  # blocks < input
    base.update(kw)
    return _bart_like("PegasusXForConditionalGeneration", "PegasusXConfig", **base)


def _longt5(**kw):
    import transformers

    base = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=20,
                decoder_start_token_id=0, local_radius=2, global_block_size=2)
    base.update(kw)
    return transformers.LongT5ForConditionalGeneration(transformers.LongT5Config(**base))


def _switch(**kw):
    import transformers

    base = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2,
                num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                decoder_start_token_id=0, num_experts=3, num_sparse_encoder_layers=1,
                num_sparse_decoder_layers=2, expert_capacity=3)  # capacity < sequence: drops
    base.update(kw)
    model = transformers.SwitchTransformersForConditionalGeneration(
        transformers.SwitchTransformersConfig(**base))
    # untied head: a real checkpoint still shares one input embedding (Transformers unties all)
    model.encoder.embed_tokens = model.decoder.embed_tokens = model.shared
    return model


def _fsmt(**kw):
    import transformers

    base = dict(src_vocab_size=VOCAB + 20, tgt_vocab_size=VOCAB, langs=["en", "de"], d_model=32,
                encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=41,
                max_position_embeddings=40, init_std=0.1, num_beams=1)  # num_beams: its config says 5
    base.update(kw)
    return transformers.FSMTForConditionalGeneration(transformers.FSMTConfig(**base))


def _combine_experts(self, hidden_states, router_mask, router_probs):
    """NLLB-MoE's expert mixture as documented (and as Transformers 4.x computed it): every expert's
    output weighted by its combine weight (``router_probs``, zero where not routed), times
    ``1 - moe_token_dropout`` at inference. Transformers 5.24 one-hot encodes the already one-hot
    ``router_mask`` instead, so only experts 0 and 1 ever run, with other experts' weights."""
    out = 0.0
    for e in range(self.num_experts):
        out = out + self[f"expert_{e}"](hidden_states) * router_probs[:, e:e + 1]
    return out * (1 - self.moe_token_dropout)


def _fix_experts(model):
    import types

    for module in model.modules():  # the reference with the documented expert mixture
        if type(module).__name__ == "NllbMoeExperts":
            module.forward = types.MethodType(_combine_experts, module)
    return model


def _nllb_moe(**kw):
    base = dict(num_experts=3, encoder_sparse_step=2, decoder_sparse_step=1, activation_function="relu",
                scale_embedding=True, encoder_layerdrop=0.0, decoder_layerdrop=0.0)
    base.update(kw)
    return _fix_experts(_bart_like("NllbMoeForConditionalGeneration", "NllbMoeConfig", **base))


CASES = {
    # name: (builder, pad_id, decoder_start_id, with global_attention_mask)
    "led_local": (lambda: _led(activation_function="relu"), 1, 2, False),
    "led_global": (lambda: _led(), 1, 2, True),
    "led_wide_window": (lambda: _led(attention_window=16, encoder_layers=1), 1, 2, False),
    "pegasus_x": (lambda: _pegasus_x(activation_function="relu"), 1, 2, False),
    "pegasus_x_unstaggered": (lambda: _pegasus_x(block_size=2, num_global_tokens=1, encoder_layers=3,
                                                 stagger_local_blocks=False, scale_embedding=False),
                              1, 2, False),
    "longt5_local": (lambda: _longt5(feed_forward_proj="gated-gelu", num_decoder_layers=1), 0, 0, False),
    # 4 blocks of 2 on 9 tokens (the 9th joins the last block); 3 on the padded row
    "longt5_tglobal": (lambda: _longt5(encoder_attention_type="transient-global", local_radius=3),
                       0, 0, False),
    "longt5_tglobal_untied": (lambda: _longt5(encoder_attention_type="transient-global",
                                              global_block_size=4, tie_word_embeddings=False,
                                              layer_norm_epsilon=1e-5), 0, 0, False),
    "switch": (lambda: _switch(router_bias=True), 0, 0, False),
    "switch_untied_gelu": (lambda: _switch(expert_capacity=64, tie_word_embeddings=False,
                                           dense_act_fn="gelu_new", num_layers=3,
                                           num_sparse_encoder_layers=3), 0, 0, False),
    # use_cache=False: Transformers' FSMT builds its causal and padding masks only without a cache
    "fsmt": (lambda: _fsmt(use_cache=False), 1, 2, False),
    "fsmt_tied_gelu": (lambda: _fsmt(tie_word_embeddings=True, activation_function="gelu",
                                     src_vocab_size=VOCAB,
                                     scale_embedding=False, decoder_layers=1, use_cache=False),
                       1, 2, False),
    "nllb_moe": (lambda: _nllb_moe(), 1, 2, False),
    "nllb_moe_router_bias": (lambda: _nllb_moe(router_bias=True, moe_token_dropout=0.0,
                                               normalize_router_prob_before_dropping=True,
                                               encoder_sparse_step=1, decoder_sparse_step=2,
                                               activation_function="gelu"), 1, 2, False),
}


def _reference(name):
    builder, pad, start, use_global = CASES[name]
    inputs = seq2seq_inputs(pad, start)
    if use_global:
        inputs["global_attention_mask"] = _global_mask(inputs)
    folder, expected = hf_reference(f"s2s-more-{name}", builder, inputs)
    return folder, inputs, expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_seq2seq_lm_logits(name):
    folder, inputs, expected = _reference(name)
    model = km.Seq2SeqLM.from_preset(folder)
    assert model.head_from_checkpoint
    assert_close(model(inputs), expected["logits"], mask=inputs["decoder_attention_mask"],
                 what=f"{name} logits")
    assert_close(model.encode(inputs), expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what=f"{name} encoder states")
    if not name.startswith("fsmt"):  # FSMT's base decoder output is already projected to the vocabulary (= logits)
        assert_backbone_close(model, inputs, expected, mask=inputs["decoder_attention_mask"], what=f"{name} decoder")


def test_led_question_answerer_global():
    inputs = seq2seq_inputs(1, 2)
    inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    inputs["global_attention_mask"] = _global_mask(inputs)
    folder, expected = hf_reference("s2s-more-led-qa", lambda: _led("LEDForQuestionAnswering"), inputs)
    model = km.QuestionAnswerer.from_preset(folder)
    assert model.head_from_checkpoint
    out = model(inputs)
    for k in ("start_logits", "end_logits"):
        assert_close(out[k], expected[k], mask=inputs["attention_mask"], what=f"led qa {k}")
    assert_backbone_close(model, inputs, expected, mask=inputs["attention_mask"], what="led qa")


@pytest.mark.parametrize("name,hf_cls,backbone_cls", [
    ("led_global", "LEDForConditionalGeneration", "LEDBackbone"),
    ("pegasus_x", "PegasusXForConditionalGeneration", "PegasusXBackbone"),
    ("longt5_tglobal_untied", "LongT5ForConditionalGeneration", "LongT5Backbone"),
    ("switch", "SwitchTransformersForConditionalGeneration", "SwitchTransformersBackbone"),
    ("fsmt", "FSMTForConditionalGeneration", "FSMTBackbone"),
    ("nllb_moe", "NllbMoeForConditionalGeneration", "NllbMoeBackbone"),
])
def test_backbone_class_and_export(name, hf_cls, backbone_cls, tmp_path):
    """save_to_preset -> Transformers reloads it and computes the same logits."""
    import torch
    import transformers

    folder, inputs, expected = _reference(name)
    assert type(km.Backbone.from_preset(folder)).__name__ == backbone_cls
    model = km.Seq2SeqLM.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    hf = _fix_experts(getattr(transformers, hf_cls).from_pretrained(tmp_path / "saved").eval())
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()}, use_cache=False).logits.numpy()
    assert_close(out, expected["logits"], mask=inputs["decoder_attention_mask"], what=f"{name} export")


# --- generate: greedy and beam search equal Transformers' generate ------------------------------
GEN_BUILDERS = {
    "led": (lambda: _led(encoder_layers=1, decoder_layers=1, forced_eos_token_id=2, init_std=0.3,
                         attention_window=4), 1),
    "pegasus_x": (lambda: _pegasus_x(decoder_layers=1, forced_eos_token_id=2, init_std=0.3), 1),
    "longt5": (lambda: _longt5(encoder_attention_type="transient-global", num_decoder_layers=1), 0),
    "switch": (lambda: _switch(num_decoder_layers=1, num_sparse_decoder_layers=1,
                               tie_word_embeddings=False), 0),
    "fsmt": (lambda: _fsmt(encoder_layers=1, decoder_layers=1), 1),
    "nllb_moe": (lambda: _nllb_moe(encoder_layers=1, decoder_layers=1, encoder_sparse_step=1,
                                   forced_eos_token_id=2, init_std=0.3), 1),
}


def _generate_reference(name, setting):
    src = inspect.getsource(inspect.getmodule(_generate_reference))
    return generate_reference(f"s2sgen-more-{name}", *GEN_BUILDERS[name], setting, src)


@pytest.mark.parametrize("name", sorted(GEN_BUILDERS))
@pytest.mark.parametrize("setting", ["greedy", "beam4"])
def test_generate_matches_transformers(name, setting):
    folder, enc, expected = _generate_reference(name, setting)
    model = km.Seq2SeqLM.from_preset(folder)
    out = np.asarray(model.generate(enc, do_sample=False, **SETTINGS[setting]))
    assert out.shape == expected.shape, (out, expected)
    np.testing.assert_array_equal(out, expected)


def test_led_generation_is_bounded_by_the_decoder_table():
    """LED's decoder table (24 positions here) is shorter than its encoder's (40): generate
    refuses to run past the decoder's, instead of reading beyond its position table."""
    from keras_models.generation.config import GenerationError

    folder, inputs, _ = _reference("led_local")
    model = km.Seq2SeqLM.from_preset(folder)
    enc = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    with pytest.raises(GenerationError, match="context of 24"):
        model.generate(enc, max_new_tokens=30)
