"""Texts the tokenizer parity tests run on (and the tiny tokenizers are trained on)."""

import random

_WORDS = (
    "the quick brown fox jumps over lazy dog language model token piece word unit "
    "東京 世界 你好 こんにちは Привет мир مرحبا العالم café naïve 😀 🎉 data test"
).split()


def long_text(n_chars: int = 5000, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = []
    while sum(len(w) + 1 for w in out) < n_chars:
        out.append(rng.choice(_WORDS))
    return " ".join(out)[:n_chars]


CORPUS = [
    "",
    " ",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "日本語のテキストです。東京は大きい。",
    "中文测试，你好世界！",
    "한국어 텍스트입니다",
    "مرحبا بالعالم، هذا نص عربي.",
    "Привет, мир! Это кириллица.",
    "👨‍👩‍👧‍👦 family emoji and 👍🏽 thumbs 🏳️‍🌈",
    "Café naïve résumé Ångström façade crème brûlée",
    "ＦＵＬＬ－ＷＩＤＴＨ　ｆｏｒｍｓ １２３ ｈｅｌｌｏ",
    "tabs\there\tand\t\tthere",
    "line one\r\nline two\r\n\r\nline three\n",
    "runs   of    spaces     here",
    "  leading and trailing  ",
    "literal [CLS] [SEP] [MASK] [PAD] [UNK] <s> </s> <pad> <unk> <mask> <|endoftext|> tokens",
    "numbers 3.14159 and 1,000,000 and 42",
    "added newtoken <special1> <ud> @@x<ctl> <extra_id_0> <|im_start|>",
    "don't won't it's they're I'm we've",
    "Hello , world . How are you ? Fine !",
    "mixed 日本 and English and русский and عربي together",
    "\u200b zero width\u00a0nbsp \u3000 ideographic space",
    long_text(),
]

PAIRS = [
    ("Hello world!", "How are you?"),
    ("日本語のテキストです。", "Привет, мир!"),
    ("", "second only"),
    ("first only", ""),
    (long_text(800, 1), long_text(300, 2)),
]

TRAINING_TEXT = CORPUS + [t for p in PAIRS for t in p] + [long_text(3000, s) for s in range(3, 8)]
