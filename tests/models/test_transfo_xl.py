"""Transformer-XL (``transfo-xl``, removed from Transformers 5) against references recorded with
Transformers 4.57.1 (tests/models/removed_golden/record_transfo_xl.py: tiny seeded checkpoints and
outputs; no Transformers model is built here, and Transformers 5 cannot load these checkpoints or
our exports, so a ``save_to_preset`` output is checked by reloading it here).

Cases: adaptive embeddings and softmax with div_val 2 and three clusters, clamp_len 6 below the
key length, same_length, post-norm (``CausalLM``); div_val 1 with a projected 12-wide embedding,
two clusters, own output projections, pre-norm, no same_length (``CausalLM_odd``); a sequence
classifier on a right-padded batch (pad id 0). Each LM is checked on a first segment (zero
memories) and on a second one continuing the memories the first returned, and greedy ``generate``
(memories as the cache) against record_transfo_xl_generate.py's tokens."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, jit_under_jax, to_numpy

GOLDEN = Path(__file__).parent / "removed_golden"


def golden():
    data = dict(np.load(GOLDEN / "transfo_xl.npz"))
    expected = {}
    for k, v in data.items():
        if "__" in k:
            task, out = k.split("__")
            expected.setdefault(task, {})[out] = v
    return data["in_input_ids"].astype("int32"), data["in_input_ids2"].astype("int32"), expected


def check_lm(model, ids, ids2, want, what):
    def run(a, b):
        logits, mems = model.call_with_mems(a)
        logits2, mems2 = model.call_with_mems(b, mems)
        return logits, mems, model.backbone({"input_ids": a}), logits2, mems2, model({"input_ids": b, "mems": mems})

    logits, mems, hidden, logits2, mems2, again = jit_under_jax(run)(ids, ids2)
    assert_close(logits, want["logits"], what=f"{what} log-probabilities")
    assert_close(hidden, want["hidden"], what=f"{what} hidden state")
    assert_close(mems, want["mems"], what=f"{what} memories")
    assert_close(logits2, want["logits2"], what=f"{what} second segment")
    assert_close(again, want["logits2"], what=f"{what} second segment (mems input)")
    assert_close(mems2, want["mems2"], what=f"{what} second memories")


@pytest.mark.parametrize("case", ["CausalLM", "CausalLM_odd"])
def test_transfo_xl_lm_parity(case, tmp_path):
    ids, ids2, expected = golden()
    model = km.CausalLM.from_preset(GOLDEN / "transfo_xl" / case)
    assert type(model).__name__ == "TransfoXLCausalLM" and model.head_from_checkpoint
    check_lm(model, ids, ids2, expected[case], f"transfo_xl {case}")
    if case == "CausalLM_odd":  # save_to_preset (config keys and tensors Transformers 4.x reads) -> reload
        model.save_to_preset(tmp_path / "saved")
        config = json.loads((tmp_path / "saved" / "config.json").read_text())
        assert config["model_type"] == "transfo-xl" and config["architectures"] == ["TransfoXLLMHeadModel"]
        assert config["cutoffs"] == [30] and config["tie_projs"] == [False, False] and config["pre_lnorm"]
        from safetensors import safe_open

        with safe_open(tmp_path / "saved" / "model.safetensors", "np") as f:
            names = set(f.keys())
        with safe_open(GOLDEN / "transfo_xl" / case / "model.safetensors", "np") as f:
            assert names == set(f.keys()) - {"transformer.pos_emb.inv_freq"}
        check_lm(km.CausalLM.from_preset(tmp_path / "saved"), ids, ids2, expected[case], "transfo_xl saved")
    else:  # .keras round trip
        model.save(tmp_path / "m.keras")
        restored = keras.saving.load_model(tmp_path / "m.keras")
        assert type(restored) is type(model)
        check_lm(restored, ids, ids2, expected[case], "transfo_xl .keras")


def test_transfo_xl_classifier_parity(tmp_path):
    ids, _, expected = golden()
    folder, want = GOLDEN / "transfo_xl" / "TextClassifier", expected["TextClassifier"]
    model = km.TextClassifier.from_preset(folder)
    assert type(model).__name__ == "TransfoXLTextClassifier" and model.head_from_checkpoint
    assert ids[1, -1] == 0 and ids[0].min() > 0  # one row padded (pooled before its first pad), one not
    logits, hidden = jit_under_jax(lambda x: (model({"input_ids": x}), model.backbone({"input_ids": x})))(ids)
    assert_close(logits, want["logits"], what="transfo_xl classifier")
    assert_close(hidden, want["hidden"], what="transfo_xl classifier hidden state")
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "TransfoXLBackbone"
    model.save_to_preset(tmp_path / "saved")
    saved = km.TextClassifier.from_preset(tmp_path / "saved")
    assert_close(jit_under_jax(lambda x: saved({"input_ids": x}))(ids), want["logits"], what="transfo_xl saved")


@pytest.mark.backend_independent
@pytest.mark.parametrize("key,value", [("attn_type", 1), ("untie_r", False), ("sample_softmax", 8),
                                       ("cutoffs", [40, 20]), ("cutoffs", [0, 20]), ("cutoffs", [20, 60]),
                                       ("mem_len", -1), ("d_model", 15), ("tie_projs", "yes"), ("n_head", 0)])
def test_transfo_xl_bad_config(key, value, tmp_path):
    import shutil

    shutil.copytree(GOLDEN / "transfo_xl" / "CausalLM", tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=key):
        km.CausalLM.from_preset(tmp_path / "m")


@pytest.mark.backend_independent
def test_transfo_xl_classifier_needs_d_embed_equal_d_model(tmp_path):
    import shutil

    shutil.copytree(GOLDEN / "transfo_xl" / "CausalLM", tmp_path / "m")
    with pytest.raises(ConfigError, match="d_embed"):
        km.TextClassifier.from_preset(tmp_path / "m", num_classes=3)
    model = km.CausalLM.from_preset(tmp_path / "m")
    assert to_numpy(model.backbone.init_mems(2)).shape == (2, 2, 5, 16)


@pytest.mark.one_case_per_pass("case")  # CI: torch runs both, jax / tensorflow one each (rotating)
@pytest.mark.parametrize("case", ["CausalLM", "CausalLM_odd"])
def test_transfo_xl_generate(case):
    """Greedy tokens equal Transformers 4.57.1's decoding with memories (the prompt, then one token at
    a time with the returned ``mems``: removed_golden/record_transfo_xl_generate.py)."""
    data = dict(np.load(GOLDEN / "transfo_xl_generate.npz"))
    assert float(data[f"{case}__margin"]) > 1e-3
    prompt = data["in_prompt"].astype("int32")
    model = km.CausalLM.from_preset(GOLDEN / "transfo_xl" / case)
    got = model.generate({"input_ids": prompt, "attention_mask": np.ones_like(prompt)}, max_new_tokens=5,
                         do_sample=False, pad_token_id=0, eos_token_id=None)
    np.testing.assert_array_equal(np.asarray(got), data[f"{case}__sequences"])
