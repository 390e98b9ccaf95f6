"""Checkpoint-only rows that reuse an architecture here with a tokenizer class we already build, loaded
from the files their hub repositories hold, with ids and decoding equal to Transformers':

* Llama2: LlamaTokenizer(Fast) over tokenizer.model (+ the tokenizer.json older Transformers wrote,
  legacy Prepend/Replace normalizer), Llama-2's tokenizer_config.json (legacy false, no pad token,
  right padding). Model: the Llama parity cases (GQA, as the 70B) in tests/models/test_decoders.py.
* CodeLlama: CodeLlamaTokenizer(Fast), Llama's pipeline with the infilling pieces (▁<PRE> ▁<MID> ▁<SUF>
  ▁<EOT>, pieces of its tokenizer.model) and <FILL_ME> as named special tokens; infilling prompts from
  ``suffix=`` (``suffix_first``) or a text holding <FILL_ME>, as the fast tokenizer builds them. Model:
  Llama parity (rope_theta is a config value the llama_gqa case varies).
* DialoGPT / Megatron-GPT2: GPT-2 byte-level BPE vocab.json + merges.txt named only by config.json's
  model_type gpt2 (Megatron-GPT2 after Transformers' conversion script); DialoGPT's turns joined by
  <|endoftext|>. Model: the gpt2 parity case (gelu_new, n_inner) in tests/models/test_decoders.py.
* T5v1.1: spiece.model with the 100 sentinels listed in tokenizer_config.json / special_tokens_map.json.
  Model: the t5_v1_1_gated_untied parity case (gated-gelu, untied head) in tests/models/test_seq2seq_parity.py.
"""

import json
import shutil
from pathlib import Path

import pytest
from tok_corpus import CORPUS, PAIRS
from tok_refs import _write_json, assert_same_padded, assert_same_texts, assert_same_vocab_and_specials
from tok_refs import ref_dir, reference_accessors

EXTRA = ["  leading spaces", "<s>inline</s> specials <unk>", "tabs\tand\nnew lines", "Émile à Paris 東京 🙂"]


def _copy(src: Path, out: Path, names):
    for name in names:
        shutil.copy(src / name, out / name)


def _added(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False,
            "rstrip": False, "single_word": False}


def _llama2(with_json):
    """Llama-2's files as meta-llama/Llama-2-*-hf holds them."""

    def build(out: Path):
        _copy(ref_dir("llama_spm"), out, ["tokenizer.model"])
        if with_json:
            _copy(ref_dir("llama_json_old_style"), out, ["tokenizer.json"])
        _write_json(out / "tokenizer_config.json", {
            "add_bos_token": True, "add_eos_token": False, "bos_token": _added("<s>"),
            "clean_up_tokenization_spaces": False, "eos_token": _added("</s>"), "legacy": False,
            "model_max_length": 1000000000000000019884624838656, "pad_token": None, "padding_side": "right",
            "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "unk_token": _added("<unk>")})
        _write_json(out / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
        _write_json(out / "config.json", {"model_type": "llama", "num_key_value_heads": 8})

    return build


INFILL = ["▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"]


def _codellama(out: Path):
    """codellama/CodeLlama-*-hf's files: tokenizer.model holding the infilling pieces, their names in
    tokenizer_config.json, the four listed in special_tokens_map.json."""
    from tok_refs import _train_spm

    _train_spm(out / "tokenizer.model", vocab_size=500, model_type="bpe", unk_id=0, bos_id=1, eos_id=2,
               byte_fallback=True, character_coverage=0.98, user_defined_symbols=INFILL)
    _write_json(out / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": _added("<s>"), "eos_token": _added("</s>"),
        "unk_token": _added("<unk>"), "clean_up_tokenization_spaces": False, "legacy": None, "pad_token": None,
        "prefix_token": "▁<PRE>", "middle_token": "▁<MID>", "suffix_token": "▁<SUF>", "eot_token": "▁<EOT>",
        "fill_token": "<FILL_ME>", "tokenizer_class": "CodeLlamaTokenizer", "use_default_system_prompt": False})
    _write_json(out / "special_tokens_map.json", {"additional_special_tokens": INFILL, "bos_token": "<s>",
                                                  "eos_token": "</s>", "unk_token": "<unk>"})
    _write_json(out / "config.json", {"model_type": "llama", "rope_theta": 1000000.0})


def _codellama_json(out: Path):
    """What Transformers writes for it (tokenizer.json + tokenizer_config.json)."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(_ref_dir("codellama_spm"))).save_pretrained(str(out))


def _gpt2_vocab(config=None):
    """GPT-2 vocab.json + merges.txt; config.json names gpt2 (DialoGPT also has tokenizer_config.json)."""

    def build(out: Path):
        _copy(ref_dir("gpt2_vocab"), out, ["vocab.json", "merges.txt"])
        if config is not None:
            _write_json(out / "tokenizer_config.json", config)
        _write_json(out / "config.json", {"model_type": "gpt2", "activation_function": "gelu_new"})

    return build


def _t5v11(out: Path):
    """google/t5-v1_1-*'s files: spiece.model, 100 sentinels named in both config files."""
    _copy(ref_dir("t5_spm"), out, ["spiece.model"])
    extra = [f"<extra_id_{i}>" for i in range(100)]
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    _write_json(out / "tokenizer_config.json",
                {"extra_ids": 100, "additional_special_tokens": extra, "model_max_length": 512, **specials})
    _write_json(out / "special_tokens_map.json", {**specials, "additional_special_tokens": extra})
    _write_json(out / "config.json", {"model_type": "t5", "feed_forward_proj": "gated-gelu",
                                      "tie_word_embeddings": False})


BUILDERS = {
    "llama2_spm": _llama2(False),
    "llama2_json": _llama2(True),
    "dialogpt_vocab": _gpt2_vocab({"model_max_length": 1024}),
    "megatron_gpt2_vocab": _gpt2_vocab(),
    "t5v1_1_spm": _t5v11,
    "codellama_spm": _codellama,
    "codellama_json": _codellama_json,
}
_ref_dir, hf_tok, our_tok = reference_accessors(BUILDERS)


def _fresh_with_pad(name):
    """New (uncached) tokenizers of the folder, both given eos as their pad token."""
    from transformers import AutoTokenizer

    from keras_models.tokenizers import Tokenizer

    folder = str(_ref_dir(name))
    hf, ours = AutoTokenizer.from_pretrained(folder), Tokenizer.from_preset(folder)
    hf.pad_token = ours.pad_token = hf.eos_token
    return hf, ours


@pytest.mark.parametrize("name", sorted(set(BUILDERS) - {"codellama_spm"}))  # that one: test_codellama_infilling
def test_texts_pairs_padding_and_specials(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert_same_vocab_and_specials(hf, ours)
    assert ours.padding_side == hf.padding_side and ours.model_max_length == hf.model_max_length
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)
    assert_same_texts(hf, ours, CORPUS + EXTRA, name)
    if hf.pad_token is None:  # Llama-2 and GPT-2 ship no pad token: users set one, as with Transformers
        hf, ours = _fresh_with_pad(name)
    for side in ("right", "left"):
        assert_same_padded(hf, ours, name, [p[0] for p in PAIRS], [p[1] for p in PAIRS], side=side)


def test_dialogpt_turns():
    """DialoGPT's history: each turn followed by eos; the reply is decoded after the history's length."""
    hf, ours = hf_tok("dialogpt_vocab"), our_tok("dialogpt_vocab")
    turns = ["Does money buy happiness?", "Depends how much money you spend on it.", "What is the best way?"]
    history = "".join(t + hf.eos_token for t in turns)
    ids = hf.encode(history)
    assert ours.encode(history) == ids and ids.count(hf.eos_token_id) == 3
    assert ours.decode(ids[-8:], skip_special_tokens=True) == hf.decode(ids[-8:], skip_special_tokens=True)
    batch = [t + hf.eos_token for t in turns]
    assert ours(batch, return_tensors=None)["input_ids"] == hf(batch)["input_ids"]


def test_t5v11_sentinels():
    hf, ours = hf_tok("t5v1_1_spm"), our_tok("t5v1_1_spm")
    text = "The <extra_id_0> walks in <extra_id_1> park"
    assert ours(text, text_target="<extra_id_0> cute dog <extra_id_1> the <extra_id_2>",
                return_tensors=None) == dict(hf(text, text_target="<extra_id_0> cute dog <extra_id_1> the <extra_id_2>"))
    assert ours.convert_tokens_to_ids("<extra_id_99>") == hf.convert_tokens_to_ids("<extra_id_99>")
    assert json.loads((_ref_dir("t5v1_1_spm") / "config.json").read_text())["feed_forward_proj"] == "gated-gelu"


@pytest.mark.parametrize("name", ["codellama_spm", "codellama_json"])
def test_codellama_infilling(name):
    """Infilling prompts equal Transformers' (a fresh Transformers tokenizer per call: its infilling call
    leaves another normalizer in place afterwards)."""
    from transformers import AutoTokenizer

    folder = str(_ref_dir(name))
    assert our_tok(name).special_tokens_map == hf_tok(name).special_tokens_map
    _, ours = _fresh_with_pad(name)
    cases = [(("def f(x):\n    <FILL_ME>\n    return y",), {}),
             (("def f(x):\n    ",), {"suffix": "\n    return y"}),
             (("  two  spaces ",), {"suffix": " tail  ", "padding": "max_length", "max_length": 40}),
             (("pre",), {"suffix": "suf", "suffix_first": True}),
             (("pre",), {"suffix": "suf", "add_special_tokens": False})]
    for args, kw in cases:
        hf = AutoTokenizer.from_pretrained(folder)
        hf.pad_token = hf.eos_token
        ref = hf(*args, **kw)
        assert ours(*args, return_tensors=None, **kw) == dict(ref), (args, kw)
        ids = ref["input_ids"]
        assert ours.decode(ids) == hf_tok(name).decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == hf_tok(name).decode(ids, skip_special_tokens=True)
    assert ours("no fill here", suffix="", return_tensors=None) == ours("no fill here", return_tensors=None)
    with pytest.raises(ValueError, match="fill_token"):
        ours("a <FILL_ME> b <FILL_ME> c")
    with pytest.raises(TypeError, match="infilling"):
        our_tok("llama2_spm")("a", suffix="b")
