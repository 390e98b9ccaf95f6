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


def test_torch_randn_copy():
    import torch

    from keras_models.models.reformer import torch_randn

    for seed in (0, 3, 2**31 + 5):
        for shape in [(2, 4, 1, 1), (3, 5, 1, 1), (2, 4, 2, 2), (2, 6, 2, 3), (4, 8, 2, 4)]:
            torch.manual_seed(seed)
            np.testing.assert_allclose(torch_randn(seed, shape), torch.randn(shape).numpy(), atol=1e-6)


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
