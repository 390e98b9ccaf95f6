"""Reformer: CausalLM logits and final hidden state against tiny random Transformers
ReformerModelWithLMHead models on a right-padded batch of 7 tokens (padded by the model to the
chunk lengths' multiple, local attention chunked with neighbours, LSH attention unhashed since the
padded length fits one LSH chunk; several chunks: test_reformer_lsh.py), export reloaded by Transformers, a .keras round trip and
config errors."""

import json
import shutil

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, hf_reference, jit_under_jax, to_numpy

VOCAB, SEQ, PAD = 53, 7, 3

# "axial": local (chunk 4, one chunk before) and LSH (chunk 16) layers, axial
# position embeddings, gelu, an attention width (2 x 6) unlike the hidden size; padded 7 -> 16.
# "learned": learned positions, three layers, relu, local chunk 2 with two chunks before; 7 -> 8.
CASES = {
    "axial": dict(hidden_size=16, num_attention_heads=2, attention_head_size=6, attn_layers=["local", "lsh"],
                  axial_pos_embds=True, axial_pos_shape=(4, 8), axial_pos_embds_dim=(6, 10),
                  max_position_embeddings=32, feed_forward_size=24, hidden_act="gelu", local_attn_chunk_length=4,
                  local_num_chunks_before=1, local_num_chunks_after=0, lsh_attn_chunk_length=16, num_buckets=2,
                  layer_norm_eps=1e-6),
    "learned": dict(hidden_size=16, num_attention_heads=4, attention_head_size=4,
                    attn_layers=["lsh", "local", "local"], axial_pos_embds=False, max_position_embeddings=16,
                    feed_forward_size=20, hidden_act="relu", local_attn_chunk_length=2, local_num_chunks_before=2,
                    local_num_chunks_after=0, lsh_attn_chunk_length=8, num_buckets=2),
}


def _build(case):
    def build():
        import transformers

        config = transformers.ReformerConfig(vocab_size=VOCAB, is_decoder=True, hash_seed=0, pad_token_id=0,
                                             eos_token_id=2, **CASES[case])
        return transformers.ReformerModelWithLMHead(config)
    build.__name__ = f"build_{case}"
    return build


def _inputs():
    rng = np.random.RandomState(5)
    ids = rng.randint(3, VOCAB, size=(2, SEQ)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, SEQ - PAD:], mask[1, SEQ - PAD:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


_MODELS = {}


def _load(case):
    if case not in _MODELS:
        inputs = _inputs()
        folder, expected = hf_reference(f"reformer-{case}", _build(case), inputs)
        _MODELS[case] = (km.CausalLM.from_preset(folder), folder, inputs, expected)
    return _MODELS[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_reformer_logits_and_hidden_state(case):
    model, _, inputs, expected = _load(case)
    assert type(model).__name__ == "ReformerCausalLM" and model.head_from_checkpoint

    def run(x):
        hidden = model.backbone(x)
        return model.logits(hidden), hidden

    out, hidden = (to_numpy(t) for t in jit_under_jax(run)(inputs))
    assert out.shape == (2, SEQ, VOCAB) and hidden.shape == (2, SEQ, 32)
    assert_close(out, expected["logits"], mask=inputs["attention_mask"], what=f"{case} logits")
    assert_backbone_close(model, inputs, expected, mask=inputs["attention_mask"], what=case, hidden=hidden)


def test_reformer_export_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    for case in sorted(CASES):
        model, _, inputs, expected = _load(case)
        model.save_to_preset(tmp_path / case)
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / case).eval()
        with torch.no_grad():
            out = hf(input_ids=torch.tensor(inputs["input_ids"]),
                     attention_mask=torch.tensor(inputs["attention_mask"]), use_cache=False).logits.numpy()
        assert_close(out, expected["logits"], mask=inputs["attention_mask"], what=f"{case} re-exported")
    inputs = _inputs()
    folder, expected = hf_reference("reformer-head-MaskedLM", _build_head("MaskedLM"), inputs)
    km.MaskedLM.from_preset(folder).save_to_preset(tmp_path / "mlm")
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm").eval()
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(inputs["input_ids"]),
                 attention_mask=torch.tensor(inputs["attention_mask"])).logits.numpy()
    assert_close(out, expected["logits"], mask=inputs["attention_mask"], what="MaskedLM re-exported")


def test_reformer_keras_round_trip_and_backbone(tmp_path):
    from tests.parity import assert_keras_round_trip

    model, folder, inputs, expected = _load("learned")
    assert_keras_round_trip(model, inputs, tmp_path)
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "ReformerBackbone"
    assert_close(to_numpy(backbone(inputs)), expected["last_hidden_state"], mask=inputs["attention_mask"],
                 what="Backbone.from_preset")


@pytest.mark.parametrize("key,value", [("attn_layers", ["local", "global"]), ("axial_pos_embds_dim", [6, 9]),
                                       ("tie_word_embeddings", True), ("local_num_chunks_before", -1),
                                       ("hidden_act", "nonsense")])
def test_reformer_bad_config_names_the_key(tmp_path, key, value):
    from keras_models.errors import ConfigError

    _, folder, _, _ = _load("axial")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config[key] = value
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=key):
        km.CausalLM.from_preset(bad)


# the encoder heads: no causal mask, local attention with a chunk after as well as before
HEADS = {"MaskedLM": ("ReformerForMaskedLM", "logits"), "TextClassifier": ("ReformerForSequenceClassification", "logits"),
         "QuestionAnswerer": ("ReformerForQuestionAnswering", "start_logits")}
ENCODER = dict(CASES["axial"], local_num_chunks_after=1, hidden_act="gelu_new")


def _build_head(task):
    def build():
        import transformers

        config = transformers.ReformerConfig(vocab_size=VOCAB, is_decoder=False, hash_seed=0, pad_token_id=0,
                                             num_labels=2 if task == "QuestionAnswerer" else 3, **ENCODER)
        return getattr(transformers, HEADS[task][0])(config)
    build.__name__ = f"build_head_{task}"
    return build


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", sorted(HEADS))
def test_reformer_heads(task):
    inputs = _inputs()
    folder, expected = hf_reference(f"reformer-head-{task}", _build_head(task), inputs)
    model = getattr(km, task).from_preset(folder)
    assert type(model).__name__ == f"Reformer{task}" and model.head_from_checkpoint
    out = jit_under_jax(model)(inputs)
    mask = inputs["attention_mask"]
    if task == "QuestionAnswerer":
        for key in ("start_logits", "end_logits"):
            assert_close(to_numpy(out[key]), expected[key], mask=mask, what=f"{task} {key}")
    elif task == "TextClassifier":
        assert_close(to_numpy(out), expected["logits"], what=task)
    else:
        assert_close(to_numpy(out), expected["logits"], mask=mask, what=task)
    assert_backbone_close(model, inputs, expected, mask=mask, what=task)


def test_reformer_generate_matches_transformers():
    """Greedy tokens equal Transformers' generate (within one LSH chunk; beyond: test_reformer_lsh.py)."""
    model, source, inputs, _ = _load("axial")
    prompt = inputs["input_ids"][:1, :5]
    kw = dict(do_sample=False, max_new_tokens=6, pad_token_id=0, eos_token_id=None)

    def build(tmp):
        import torch
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
        with torch.no_grad():
            out = hf.generate(input_ids=torch.tensor(prompt), attention_mask=torch.ones(prompt.shape, dtype=torch.long),
                              output_logits=True, return_dict_in_generate=True, **kw)
        top = np.sort(np.stack([x.float().numpy()[0] for x in out.logits]), axis=-1)
        np.save(tmp / "seq.npy", out.sequences.numpy())
        np.save(tmp / "margin.npy", np.asarray((top[:, -1] - top[:, -2]).min()))

    from tests.parity import cached_folder

    folder = cached_folder(f"reformer-generate-{source.parent.name}", build)
    assert float(np.load(folder / "margin.npy")) > 1e-4
    got = np.asarray(model.generate({"input_ids": prompt.astype("int32"), "attention_mask": np.ones_like(prompt)}, **kw))
    np.testing.assert_array_equal(got, np.load(folder / "seq.npy"))
    from keras_models.errors import InputError

    with pytest.raises(InputError, match="max_position_embeddings"):
        model.generate({"input_ids": prompt.astype("int32"), "attention_mask": np.ones_like(prompt)},
                       max_new_tokens=30, do_sample=False)
