"""Records tests/tokenizers/cpm_golden/cpmant/ and cpmant.json (the reference for test_cpm_tokenizers.py).

CPM-Ant's tokenizer (``CpmAntTokenizer``, python-only) segments the text with jieba (rjieba, jieba-rs),
then cuts each word into the longest vocabulary entries from its start (unknown characters one by one).
The test suite does not install rjieba, so its ids were recorded once with Transformers 5.25 (the current
reference; CPM-Ant is still in Transformers 5) and rjieba:
    pip install rjieba
    python tests/tokenizers/cpm_golden/record_cpmant.py
"""

import json
import shutil
from pathlib import Path

import rjieba
import transformers
from transformers import CpmAntTokenizer

HERE = Path(__file__).parent
SPECIALS = ["<d>", "</d>", "<s>", "</s>", "</_>", "<unk>", "<pad>", "</n>"]
WORDS = ["我", "爱", "北京", "北", "京", "天安门", "天安", "门", "，", "。", "今天", "天气", "今天天气", "很", "好",
         "你好", "世界", "清华", "大学", "清华大学", "的", "中文", "模型", "训练", "预", "H", "e", "l", "lo", "hel",
         "hello", "w", "o", "r", "d", "world", "C", "P", "M", "1", "2", ".", "-", "<", ">", "第", "二", "行",
         "空格", "两个", "天下", "熙熙", "来", "再见"]
TEXTS = [
    "我爱北京天安门，今天天气很好。",
    "hello world 你好世界\n第二行  两个空格",
    "CPM是清华大学的中文预训练模型GPT-2 v1.5",
    "天气<d>很好</s>再见<pad>",
    "helloworld heLLo",
    "",
]
BATCH = ["天下熙熙，皆为利来", "你好 world\n再见"]


def main():
    folder = HERE / "cpmant"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in SPECIALS + WORDS), encoding="utf-8")
    CpmAntTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert type(tok).__name__ == "CpmAntTokenizer", type(tok)
    cases = []
    for text in TEXTS:
        enc = tok(text)
        ids = enc["input_ids"]
        cases.append({"text": text, "words": list(rjieba.cut(text, False)), "ids": ids,
                      "attention_mask": enc["attention_mask"], "keys": sorted(enc),
                      "no_specials": tok(text, add_special_tokens=False)["input_ids"],
                      # str(): 5.25's tokenize gives the unknown token as its AddedToken object
                      "tokens": [str(t) for t in tok.tokenize(text)], "decode": tok.decode(ids),
                      "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    batch = tok(BATCH, padding=True)
    out = {"transformers": transformers.__version__, "rjieba": "rjieba.cut(text, False)", "cases": cases,
           "batch": {"texts": BATCH, **{k: batch[k] for k in ("input_ids", "attention_mask")}},
           "batch_decode": tok.batch_decode(batch["input_ids"]),
           "vocab_size": tok.vocab_size, "len": len(tok)}
    (HERE / "cpmant.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, ensure_ascii=False)[:4000])


if __name__ == "__main__":
    main()
