"""Records tests/models/removed_golden/gptsan/ and gptsan.npz (GPTSAN-japanese, removed from
Transformers 5) with Transformers 4.57.1, as record.py does for the other removed rows:
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record_gptsan.py

One tiny GPTSanJapaneseForConditionalGeneration with odd options: two switch layers of 3 experts
with a router bias and an expert capacity of 3 (tokens beyond it skip their expert), one extra
dense layer (its own position table), a spout of width 6, 2 heads, eps 1e-6. Every parameter and
the final logits bias are perturbed.

* ``CausalLM``: logits of a 2 x 9 batch with a prefix (token_type_ids 1 on the first tokens: seen
  by every position), the second row left-padded by 2 (positions count from its first token);
* ``spout``: the same batch with a spout vector (one extra key/value position, positions from 1);
* ``generate``: greedy tokens of a prompt batch with a prefix, the second row left-padded. 4.57.1's
  ``generate`` cannot run this class (it has no GenerationMixin, and its cache handling fails with
  4.57's cache objects), so the tokens come from ``generate(use_cache=False)`` on the class with
  GenerationMixin added and ``use_cache`` off in its config, checked against full forward passes
  (argmax of the last logits, the generated tokens with token type 0).
* the tokenizer (GPTSanJapaneseTokenizer over a small vocab.txt / emoji.json written here): pieces,
  ids, token types (with ``prefix_text`` and with a separator in the text), decoding, and ``do_clean_text``'s
  placeholders (gptsan.json).
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from record import HERE  # noqa: E402

CONFIG = dict(vocab_size=64, max_position_embeddings=24, d_model=16, d_ff=20, d_ext=24, d_spout=6,
              num_switch_layers=2, num_ext_layers=1, num_heads=2, num_experts=3, expert_capacity=3,
              router_bias=True, layer_norm_epsilon=1e-6, separator_token_id=5, pad_token_id=3, eos_token_id=4,
              bos_token_id=2, initializer_factor=1.0)

# a small vocabulary in the format of Tanrei/GPTSAN-japanese's vocab.txt (one token per line, a
# line with commas lists spellings of one id) and emoji.json
VOCAB = ["<|nottoken|>", "<|separator|>", "<|startoftext|>", "<|endoftext|>", "<|segmenter|>", "<SP>", "<BR>",
         "<TAB>", "<BLOCK>", "<KIGOU>", "<U2000U2BFF>", "<|bagoftoken|>", "<|emoji1|>", "<|emoji2|>", "<URL>",
         "<EMAIL>", "<TEL>", "<DATE>", "<PRICE>", "こんにちは", "こん", "にちは", "に", "ち", "は", "世界", "世",
         "界", "、", "。", "日本", "日本語", "語", "です", "で", "す", "ー", "ア,あ", "イ,い", "カ", "タ", "ナ",
         "東京", "東", "京", "abc", "ab", "a", "b", "c", "1", "2", "3", "<|byte0|>"] + \
        [f"<|byte{i}|>" for i in (227, 129, 130, 131, 130, 160, 240, 159, 152, 128)]
EMOJI = {"emoji": {"😀": "<|emoji1|>", "🎉": "<|emoji2|>"}, "emoji_inv": {"<|emoji1|>": "😀", "<|emoji2|>": "🎉"}}
TEXTS = ["こんにちは、世界。", "日本語です abc", "東京\tアイカ\n12ー3", "😀 ab🎉 c", "未知の文字 ∀ ©", "tel 03-1234-5678"]
CLEAN_TEXTS = ["見て https://example.com/a?b=1 と a.b@example.co.jp", "電話 03-1234-5678、2023年1月2日 10時",
               "令和5年12月31日 1,000円(税込) と 3万ドル", "━━━ ▀▀ ─"]
PREFIXES = ["世界", "", "abc", "😀", "東京 です", ""]


def save(cls, config, folder, seed=0):
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.final_logits_bias.copy_(torch.randn_like(model.final_logits_bias))
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return cls.from_pretrained(folder).eval()


def tokenizer_cases(folder):
    from transformers import GPTSanJapaneseTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in dict.fromkeys(VOCAB)), encoding="utf-8")
    (folder / "emoji.json").write_text(json.dumps(EMOJI, ensure_ascii=False), encoding="utf-8")
    tok = GPTSanJapaneseTokenizer(str(folder / "vocab.txt"), str(folder / "emoji.json"))
    tok.save_pretrained(folder)
    tok = GPTSanJapaneseTokenizer.from_pretrained(folder)
    cases = {"tokenize": [tok.tokenize(t) for t in TEXTS],
             "single": [tok(t) for t in TEXTS],
             "prefix": [tok(t, prefix_text=p) for t, p in zip(TEXTS, PREFIXES)],
             "sep_in_text": [tok(p + "<|segmenter|>" + t) for t, p in zip(TEXTS, PREFIXES)]}
    # (4.57.1's batch encoding fails: its _batch_encode_plus override passes padding_side twice)
    cases = {k: ([dict(e) for e in v] if k != "tokenize" else v) for k, v in cases.items()}
    clean = GPTSanJapaneseTokenizer.from_pretrained(folder, do_clean_text=True)
    cases["clean"] = [clean.tokenize(t) for t in CLEAN_TEXTS]
    cases["clean_texts"] = CLEAN_TEXTS
    ids = [e["input_ids"] for e in cases["prefix"]]
    cases["decode"] = [tok.decode(i) for i in ids]
    cases["decode_skip"] = [tok.decode(i, skip_special_tokens=True) for i in ids]
    cases["texts"], cases["prefixes"] = TEXTS, PREFIXES
    return cases


def greedy(model, prompt, mask, types, n):
    from transformers import GenerationConfig, GenerationMixin

    model.__class__ = type(type(model).__name__, (type(model), GenerationMixin), {})
    model.config.use_cache = False
    model.generation_config = GenerationConfig.from_model_config(model.config)
    ids, mask, types = torch.tensor(prompt), torch.tensor(mask), torch.tensor(types)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, token_type_ids=types, do_sample=False, max_new_tokens=n,
                             min_new_tokens=n, use_cache=False, pad_token_id=3).numpy()
        check, m, t = ids, mask, types
        for _ in range(n):
            nxt = model(input_ids=check, attention_mask=m, token_type_ids=t).logits[:, -1].argmax(-1)
            check = torch.cat([check, nxt[:, None]], 1)
            m = torch.cat([m, torch.ones_like(m[:, :1])], 1)
            t = torch.cat([t, torch.zeros_like(t[:, :1])], 1)
    assert (check.numpy() == out).all(), (out, check)
    return out


def main():
    from transformers import GPTSanJapaneseConfig, GPTSanJapaneseForConditionalGeneration

    model = save(GPTSanJapaneseForConditionalGeneration, GPTSanJapaneseConfig(**CONFIG), HERE / "gptsan" / "CausalLM")
    rng = np.random.RandomState(0)
    ids = rng.randint(6, 64, size=(2, 9)).astype("int64")
    mask = np.ones_like(ids)
    types = np.zeros_like(ids)
    types[0, :4] = 1
    ids[1, :2], mask[1, :2] = 3, 0
    types[1, 2:5] = 1
    spout = rng.randn(2, 6).astype("float32")
    arrays = {"in_input_ids": ids, "in_attention_mask": mask, "in_token_type_ids": types, "in_spout": spout}
    with torch.no_grad():
        t = {k: torch.tensor(v) for k, v in (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types))}
        out = model(**t, output_hidden_states=True)
        arrays["CausalLM__logits"] = out.logits.numpy()
        arrays["CausalLM__hidden"] = out.hidden_states[-1].numpy()
        t.pop("token_type_ids")
        out = model(**t, spout=torch.tensor(spout), output_hidden_states=True)
        arrays["spout__logits"] = out.logits.numpy()
        arrays["spout__hidden"] = out.hidden_states[-1].numpy()
    prompt = rng.randint(6, 64, size=(2, 6)).astype("int64")
    pmask, ptypes = np.ones_like(prompt), np.zeros_like(prompt)
    ptypes[0, :3] = 1
    prompt[1, :2], pmask[1, :2] = 3, 0
    ptypes[1, 2:4] = 1
    arrays.update({"generate__prompt": prompt, "generate__mask": pmask, "generate__types": ptypes,
                   "generate__tokens": greedy(model, prompt, pmask, ptypes, 8)})
    np.savez(HERE / "gptsan.npz", **arrays)
    cases = tokenizer_cases(HERE / "gptsan" / "tokenizer")
    (HERE / "gptsan.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
