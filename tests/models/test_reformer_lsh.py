"""Reformer LSH attention over several chunks (hashing with the config's ``hash_seed`` rotations,
bucket sort, chunked attention with neighbours, 1-2 hash rounds combined by log-sum-exp, padding
/ causal / self masks) against tiny random Transformers models on right-padded batches several LSH
chunks long; the numpy copy of torch's seeded randn; a null hash_seed warns."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, hf_reference, jit_under_jax, to_numpy

VOCAB = 41
BASE = dict(hidden_size=16, num_attention_heads=2, attention_head_size=4, feed_forward_size=20,
            axial_pos_embds=False, max_position_embeddings=32, pad_token_id=0, eos_token_id=2)
# "causal2": decoder, two hash rounds x 4 buckets, LSH chunk 4 with one chunk before; 14 -> 16 tokens.
# "factored": encoder (MaskedLM), num_buckets [2, 2], two hash rounds, a chunk before and after,
#   local chunk 8; 19 -> 24 tokens.
# "auto": decoder, num_buckets unset (Transformers picks 8 for 16 tokens), one hash round, gelu,
#   axial positions, no chunk before; 16 tokens (no padding).
CASES = {
    "causal2": dict(BASE, is_decoder=True, attn_layers=["lsh", "local", "lsh"], lsh_attn_chunk_length=4,
                    local_attn_chunk_length=4, num_hashes=2, num_buckets=4, hash_seed=3, seq=14),
    "factored": dict(BASE, is_decoder=False, attn_layers=["local", "lsh"], lsh_attn_chunk_length=4,
                     local_attn_chunk_length=8, local_num_chunks_after=1, lsh_num_chunks_after=1, num_hashes=2,
                     num_buckets=[2, 2], hash_seed=11, seq=19),
    "auto": dict(BASE, is_decoder=True, attn_layers=["lsh", "lsh"], lsh_attn_chunk_length=4, local_attn_chunk_length=4,
                 lsh_num_chunks_before=0, num_hashes=1, num_buckets=None, hash_seed=0, hidden_act="gelu",
                 axial_pos_embds=True, axial_pos_shape=(4, 8), axial_pos_embds_dim=(6, 10), seq=16),
}


def _config(case):
    return {k: v for k, v in CASES[case].items() if k != "seq"}


def _build(case):
    def build():
        import transformers

        config = transformers.ReformerConfig(vocab_size=VOCAB, **_config(case))
        cls = transformers.ReformerModelWithLMHead if config.is_decoder else transformers.ReformerForMaskedLM
        return cls(config)
    build.__name__ = f"build_lsh_{case}"
    return build


def _inputs(case):
    seq = CASES[case]["seq"]
    rng = np.random.RandomState(len(case))
    ids = rng.randint(3, VOCAB, size=(2, seq)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, seq - 5:], mask[1, seq - 5:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.one_case_per_pass("case")  # CI: torch runs all three, jax / tensorflow one each (rotating)
@pytest.mark.parametrize("case", sorted(CASES))
def test_reformer_lsh_several_chunks(case):
    inputs = _inputs(case)
    folder, expected = hf_reference(f"reformer-lsh-{case}", _build(case), inputs)
    task = "CausalLM" if CASES[case]["is_decoder"] else "MaskedLM"
    model = getattr(km, task).from_preset(folder)
    head = model.logits if task == "CausalLM" else model.decoder

    def run(x):
        hidden = model.backbone(x)
        return head(hidden), hidden

    out, hidden = (to_numpy(t) for t in jit_under_jax(run)(inputs))
    assert out.shape == (2, CASES[case]["seq"], VOCAB)
    mask = inputs["attention_mask"]
    assert_close(out, expected["logits"], mask=mask, what=f"{case} logits")
    assert_backbone_close(model, inputs, expected, mask=mask, what=case, hidden=hidden)


@pytest.mark.backend_independent  # numpy against torch.randn, no Keras op
def test_torch_randn_copy():
    import torch

    from keras_models.models.reformer.layer import torch_randn

    for seed in (0, 3, 2**31 + 5):
        for shape in [(2, 4, 1, 1), (3, 5, 1, 1), (2, 4, 2, 2), (2, 6, 2, 3), (4, 8, 2, 4)]:
            torch.manual_seed(seed)
            np.testing.assert_allclose(torch_randn(seed, shape), torch.randn(shape).numpy(), atol=1e-6)


@pytest.mark.backend_independent  # the warning comes from the spec, in Python, before any backend op (jax: 12 s eager)
def test_null_hash_seed_warns(tmp_path):
    import json
    import shutil

    folder, _ = hf_reference("reformer-lsh-auto", _build("auto"), _inputs("auto"))
    shutil.copytree(folder, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["hash_seed"] = None
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    model = km.CausalLM.from_preset(tmp_path / "m")
    with pytest.warns(UserWarning, match="hash_seed"):
        model({"input_ids": np.ones((1, 16), "int32")})


def _generate_reference(folder, prompt, new):
    def build(tmp):
        import torch
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.no_grad():
            out = hf.generate(input_ids=torch.tensor(prompt), max_new_tokens=new, do_sample=False, pad_token_id=0,
                              eos_token_id=None, output_logits=True, return_dict_in_generate=True)
        np.save(tmp / "seq.npy", out.sequences.numpy())
        np.save(tmp / "logits.npy", np.stack([x.float().numpy() for x in out.logits], axis=1))

    from tests.parity import cached_folder

    ref = cached_folder(f"reformer-lsh-generate-{folder.parent.name}-{prompt.shape[1]}-{new}", build)
    return np.load(ref / "seq.npy"), np.load(ref / "logits.npy")


@pytest.mark.one_case_per_pass("prompt")  # CI: torch runs both, jax / tensorflow one each (rotating)
@pytest.mark.parametrize("prompt", [3, 6])
def test_reformer_lsh_generate_with_bucket_cache(prompt):
    """Greedy tokens and every step's logits equal Transformers' generate with its bucket / state
    cache, the buffer growing to several LSH chunks: a 3-token prompt (plain attention until the
    buffer reaches one chunk, then every cached input hashed) and a 6-token one (hashed at once,
    padded to 8 so that its cached buckets carry the padding bucket's offsets)."""
    case, new = "causal2", 9
    folder, _ = hf_reference(f"reformer-lsh-{case}", _build(case), _inputs(case))
    ids = np.random.RandomState(prompt).randint(3, VOCAB, size=(1, prompt)).astype("int64")
    seq, logits = _generate_reference(folder, ids, new)
    top = np.sort(logits, axis=-1)
    assert (top[..., -1] - top[..., -2]).min() > 1e-3  # top-2 gap: no near ties
    model = km.CausalLM.from_preset(folder)
    got = model.generate({"input_ids": ids.astype("int32"), "attention_mask": np.ones_like(ids)},
                         max_new_tokens=new, do_sample=False, pad_token_id=0, eos_token_id=None)
    np.testing.assert_array_equal(np.asarray(got), seq)
    # the cached steps one by one: each step's logits
    total = prompt + new
    cache = model.init_cache(1, total)
    mask = np.ones((1, total), "int32")
    out, cache = jit_under_jax(lambda tok, c: model.call_with_cache(tok, c, 0, mask))(seq[:, :prompt].astype("int32"),
                                                                                      cache)
    steps = [to_numpy(out)[:, -1]]
    step = jit_under_jax(lambda tok, c, i: model.call_with_cache(tok, c, i, mask))  # one compile for every index
    for i in range(prompt, total - 1):
        out, cache = step(seq[:, i:i + 1].astype("int32"), cache, np.asarray(i, "int32"))
        steps.append(to_numpy(out)[:, -1])
    assert_close(np.stack(steps, axis=1), logits, what=f"prompt {prompt} step logits")
