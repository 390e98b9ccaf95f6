"""Records tests/tokenizers/cpm_golden/cpm/ and cpm.json (the reference for test_cpm_tokenizers.py).

CPM's tokenizer (``CpmTokenizerFast``) segments the text with jieba (rjieba, jieba-rs), writes spaces and
line breaks as "\u2582" / "\u2583", joins the words with spaces, then runs XLNet's SentencePiece pipeline.
Transformers 5 dropped the jieba step: its CpmTokenizerFast overrides ``_batch_encode_plus``, which 5.x no
longer calls, and its python CpmTokenizer (like 4.57.1's) never segments at all. So the ids were recorded
once with Transformers 4.57.1's CpmTokenizerFast (with rjieba installed):
    pip install rjieba
    PYTHONPATH=/tmp/tf4 python tests/tokenizers/cpm_golden/record_cpm.py

The folder is what the CPM-Generate repository ships: spiece.model (a tiny unigram model trained here on
jieba-segmented text) + the tokenizer.json that Transformers' XLNet converter makes of it, with a
tokenizer_config.json naming CpmTokenizer.
"""

import io
import json
import shutil
from pathlib import Path

import rjieba
import sentencepiece as spm
import transformers
from transformers import CpmTokenizerFast, XLNetTokenizerFast

HERE = Path(__file__).parent
TRAIN = [
    "我爱北京天安门，今天天气很好。",
    "清华大学的中文预训练模型可以生成文本。",
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "你好世界，这是一个测试。第二行有两个空格。",
    "CPM是一个大规模的中文语言模型，参数有二十六亿。",
    "数字3.14和百分号%，还有#标签&符号。",
    "天下熙熙，皆为利来；天下攘攘，皆为利往。",
]
TEXTS = [
    "我爱北京天安门，今天天气很好。",
    "Hello world 你好世界\n第二行  两个空格",
    "CPM是清华大学的中文预训练模型GPT-2 v1.5",
    "  前后有空格  \n\n",
    "天气<eod>很好 <mask> 测试",
    "Café ＡＢＣ１２３，测试``引号''",
    "",
]
BATCH = ["天下熙熙，皆为利来", "你好 world\n再见"]
SPECIALS = ["<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]


def segmented(text):
    table = str.maketrans(" \n", "\u2582\u2583")
    return " ".join(w.translate(table) for w in rjieba.cut(text, False))


def main():
    assert transformers.__version__.startswith("4."), "record with Transformers 4.57.1 (PYTHONPATH=/tmp/tf4)"
    folder = HERE / "cpm"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    lines = [segmented(t) for t in TRAIN] + [segmented(t) for t in TEXTS + BATCH if t]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="unigram",
                                   vocab_size=160, hard_vocab_limit=False, character_coverage=1.0,
                                   control_symbols=SPECIALS, normalization_rule_name="identity", num_threads=1,
                                   minloglevel=2)
    (folder / "spiece.model").write_bytes(buf.getvalue())
    # tokenizer.json: XLNet's converter (CpmTokenizerFast has no converter of its own)
    XLNetTokenizerFast(vocab_file=str(folder / "spiece.model")).save_pretrained(str(folder / "_xlnet"))
    shutil.move(str(folder / "_xlnet" / "tokenizer.json"), str(folder / "tokenizer.json"))
    shutil.rmtree(folder / "_xlnet")
    tok = CpmTokenizerFast(vocab_file=str(folder / "spiece.model"), tokenizer_file=str(folder / "tokenizer.json"))
    tok.save_pretrained(str(folder))
    tok = CpmTokenizerFast.from_pretrained(str(folder))  # the reference is the reloaded folder
    cases = []
    for text in TEXTS:
        enc = tok(text)
        ids = enc["input_ids"]
        cases.append({"text": text, "segmented": segmented(text), "ids": ids,
                      "token_type_ids": enc["token_type_ids"], "attention_mask": enc["attention_mask"],
                      "no_specials": tok(text, add_special_tokens=False)["input_ids"],
                      "tokens": tok.tokenize(text), "decode": tok.decode(ids),
                      "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    batch = tok(BATCH, padding=True)
    out = {"transformers": transformers.__version__, "rjieba": "rjieba.cut(text, False)", "cases": cases,
           "batch": {"texts": BATCH, **{k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}},
           "batch_decode": tok.batch_decode(batch["input_ids"], skip_special_tokens=True),
           "vocab_size": tok.vocab_size, "len": len(tok)}
    (HERE / "cpm.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, ensure_ascii=False)[:3000])


if __name__ == "__main__":
    main()
