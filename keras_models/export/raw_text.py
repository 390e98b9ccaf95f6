"""A TF SavedModel whose serving signature takes raw strings (``model.export(path,
format="tf_saved_model", raw_strings=True)``).

The tokenizers here run in Rust (``tokenizers``), which a SavedModel cannot hold, so the export
re-expresses the preset's ``tokenizer.json`` with TensorFlow and ``tensorflow_text`` ops (the
optional extra ``keras-models[tf-serving]``) and puts them in front of the usual token-input
SavedModel. Supported: WordPiece tokenizers (BERT-like) with

* a ``BertNormalizer`` (clean_text, handle_chinese_chars, strip_accents, lowercase) or a
  ``Sequence`` of ``NFC``/``NFD``/``NFKC``/``NFKD``/``Lowercase``/``StripAccents``, or none;
* a ``BertPreTokenizer`` or ``WhitespaceSplit`` pre-tokenizer;
* a ``TemplateProcessing`` or ``BertProcessing`` post-processor (or none);
* the preprocessor's truncation and padding (``sequence_length``, 'longest' / 'max_length',
  ``pad_to_multiple_of``), right side.

and SentencePiece Unigram tokenizers (T5, ALBERT, XLM-R-like) whose preset has its ``.model`` file
(kept as bytes on the loaded tokenizer): the file runs in ``tensorflow_text.SentencepieceTokenizer``
with tokenizer.json's normaliser (Replace / NFx / StripAccents / Lowercase steps in TF ops first;
Precompiled, as the last step and the model's own map, inside the op; otherwise an identity
normaliser), one word at a time (WhitespaceSplit + Metaspace), its piece ids mapped to the
tokenizer's by piece text (so XLM-R's fairseq offset and its <s> <pad> </s> <unk> follow), then the
same template, truncation and padding. NUL becomes an unknown character (the op reads C strings),
and decomposed Hangul jamo are kept apart (the Rust Precompiled step does not recompose them).

Before anything is written, the TF tokenization is run on a probe corpus (accents, upper case,
CJK, punctuation, control characters, an over-long word, the empty string) and compared with the
preprocessor's; any difference is an ``ExportError``. Known differences that the probe does not
exercise: added tokens marked ``normalized`` or ``single_word`` (rare in WordPiece presets; the
others, such as ``"[MASK]"`` typed in a sentence, are matched on the raw text as the Rust
tokenizer does); a NUL character when the normaliser does not clean text (``clean_text``
drops it; without it, ``tf_text.regex_split`` ends the text there); unassigned code points
(Unicode category Cn), which the Rust ``clean_text`` drops and the TF regexes keep; and Unicode
version differences between ICU (TF's lower-casing and normalisation) and Rust's tables.
Lower-casing is per character as in Rust: TF's ``tf.strings.lower`` alone would map a word-final
capital sigma to ``ς`` where the Rust tokenizer gives ``σ``, so ``Σ`` is mapped first.
(``tensorflow_text.BertTokenizer``'s own ``lower_case`` is NFKC case folding, which also rewrites
full-width forms, ligatures and ``ß``, so it is not used.)

The SavedModel has the signatures ``serving_default`` (``texts``: string ``(batch,)`` -> the
model's outputs) and ``tokenize`` (``texts`` -> the token inputs), and the functions ``serve``
(strings), ``serve_tokens`` (the token inputs, as a plain export) and ``tokenize``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tempfile
import types
from pathlib import Path

import numpy as np

# Rust's char::is_whitespace (the Unicode White_Space property), as an RE2 class body
_WHITESPACE = r"\t\n\x0b\x0c\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
# ASCII punctuation (includes symbols such as $ + < = > ^ ` | ~) or a Unicode P* category
_PUNCT = r"\p{P}!-/:-@\[-`{-~"
# the CJK ideograph blocks the Rust BertNormalizer pads with spaces
_CJK = (r"\x{3400}-\x{4dbf}\x{4e00}-\x{9fff}\x{f900}-\x{faff}\x{20000}-\x{2a6df}\x{2a700}-\x{2b81f}"
        r"\x{2b920}-\x{2ceaf}\x{2f800}-\x{2fa1f}")
# Rust's clean_text drops \0, U+FFFD and "other" characters (Cc, Cf, Co; Cn is not expressible
# in RE2) except \t \n \r
_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{fffd}\p{Cf}\p{Co}"

PROBE_TEXTS = [
    "Hello, World! The movie was GREAT.",
    "Café naïve résumé ÉCOLE Ångström",
    "ΟΔΟΣ Straße İstanbul",
    "中文字符 and 日本語のテキスト 한국어",
    "punctuation: a-b_c (d) [e] {f} \"g\" 'h' $i +j <k> ^l `m` |n| ~o ¿p? ¡q! «r» “s” — t…",
    "tabs\tnew\nlines\r\nand\u3000ideographic\u00a0spaces",
    "control\x00chars\u200bzero\ufffdwidth\x7f",
    "a" * 150 + " short " + "é" * 60,
    "",
    "   ",
    "x",
    "[CLS] typed [MASK] tokens[SEP]and [UNK]s",
]


def _error(message):
    from keras_models.export import ExportError

    return ExportError(message)


def _normalizer_steps(normalizer):
    """``tokenizer.json``'s normalizer as a list of (op, args) steps."""
    if normalizer is None:
        return []
    kind = normalizer.get("type")
    if kind == "Sequence":
        return [step for sub in normalizer.get("normalizers", []) for step in _normalizer_steps(sub)]
    if kind == "BertNormalizer":
        lowercase = bool(normalizer.get("lowercase", True))
        strip = normalizer.get("strip_accents")
        steps = []
        if normalizer.get("clean_text", True):
            steps.append(("clean_text", None))
        if normalizer.get("handle_chinese_chars", True):
            steps.append(("chinese", None))
        if strip or (strip is None and lowercase):
            steps.append(("strip_accents", None))
        if lowercase:
            steps.append(("lowercase", None))
        return steps
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return [("unicode", kind)]
    if kind == "Lowercase":
        return [("lowercase", None)]
    if kind == "StripAccents":
        return [("remove_marks", None)]
    if kind == "Replace":
        pattern = normalizer.get("pattern") or {}
        if "String" in pattern:
            return [("replace", (re.escape(pattern["String"]), normalizer.get("content", "")))]
        if "Regex" in pattern:  # Oniguruma in Rust, RE2 here: the probe checks they agree
            return [("replace", (pattern["Regex"], normalizer.get("content", "")))]
    if kind == "Precompiled":  # SentencePiece's own character map: applied by the SentencePiece op
        return [("precompiled", normalizer.get("precompiled_charsmap") or "")]
    raise _error(f"raw_strings=True: the tokenizer's normalizer {kind!r} has no TensorFlow equivalent here "
                 "(supported: BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, Replace, and for SentencePiece "
                 "models Precompiled, and Sequences of them)")


def _template(post, vocab):
    """(prefix ids, prefix type ids, sequence type id, suffix ids, suffix type ids) of one text."""
    if post is None:
        return [], [], 0, [], []
    kind = post.get("type")
    if kind == "BertProcessing":
        (_, cls_id), (_, sep_id) = post["cls"], post["sep"]
        return [int(cls_id)], [0], 0, [int(sep_id)], [0]
    if kind != "TemplateProcessing":
        raise _error(f"raw_strings=True: the tokenizer's post-processor {kind!r} is not supported "
                     "(TemplateProcessing or BertProcessing)")
    specials = post.get("special_tokens", {})
    prefix, prefix_types, suffix, suffix_types, seq_type, seen = [], [], [], [], 0, False
    for piece in post["single"]:
        if "Sequence" in piece:
            seen, seq_type = True, int(piece["Sequence"].get("type_id", 0))
            continue
        token = piece["SpecialToken"]
        ids = specials.get(token["id"], {}).get("ids") or [vocab[token["id"]]]
        (suffix if seen else prefix).extend(int(i) for i in ids)
        (suffix_types if seen else prefix_types).extend([int(token.get("type_id", 0))] * len(ids))
    return prefix, prefix_types, seq_type, suffix, suffix_types


def tokenizer_spec(preprocessor):
    """What the TF tokenization needs, read from a text preprocessor and its ``tokenizer.json``;
    an ``ExportError`` naming the part that cannot be expressed."""
    from keras_models.preprocessing.text_base import TextPreprocessor

    tokenizer = getattr(preprocessor, "tokenizer", None)
    if not isinstance(preprocessor, TextPreprocessor) or tokenizer is None:
        raise _error(f"raw_strings=True needs a text task with a tokenizer preprocessor; the model's "
                     f"preprocessor is {type(preprocessor).__name__}")
    config = json.loads(tokenizer.backend_tokenizer.to_str())
    kind = (config.get("model") or {}).get("type")
    if kind == "Unigram":
        return _sentencepiece_spec(preprocessor, tokenizer, config)
    if kind != "WordPiece":
        raise _error(f"raw_strings=True supports WordPiece (BERT-like) and SentencePiece Unigram (T5, ALBERT, "
                     f"XLM-R-like) tokenizers; this model's tokenizer ({tokenizer.class_name}) is {kind}: export "
                     "with token inputs (raw_strings=False) and tokenize outside the SavedModel")
    pre = config.get("pre_tokenizer")
    pre_kind = None if pre is None else pre.get("type")
    if pre_kind not in ("BertPreTokenizer", "WhitespaceSplit"):
        raise _error(f"raw_strings=True: the tokenizer's pre-tokenizer {pre_kind!r} is not supported "
                     "(BertPreTokenizer or WhitespaceSplit)")
    normalizer = _normalizer_steps(config.get("normalizer"))
    if any(op == "precompiled" for op, _ in normalizer):
        raise _error("raw_strings=True: a Precompiled (SentencePiece) normalizer in a WordPiece tokenizer is not "
                     "supported")
    wp = config["model"]
    vocab = wp["vocab"]
    ordered = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in ordered] != list(range(len(ordered))):
        raise _error("raw_strings=True: the WordPiece vocabulary's ids are not 0..n-1")
    if wp.get("unk_token") not in vocab:
        raise _error(f"raw_strings=True: the WordPiece unk_token {wp.get('unk_token')!r} is not in the vocabulary")
    return {
        **_common_spec(preprocessor, tokenizer, config, vocab),
        "model": "wordpiece",
        "normalizer": normalizer,
        "split_punctuation": pre_kind == "BertPreTokenizer",
        "vocab": ordered,
        "unk_token": wp["unk_token"],
        "prefix": wp.get("continuing_subword_prefix", "##"),
        "max_chars": int(wp.get("max_input_chars_per_word", 100)),
    }


def _common_spec(preprocessor, tokenizer, config, vocab):
    """Template, truncation, padding and added tokens: the same for every tokenizer model."""
    if tokenizer.padding_side != "right" or getattr(tokenizer, "truncation_side", "right") != "right":
        raise _error("raw_strings=True pads and truncates on the right only; this tokenizer uses "
                     f"padding_side={tokenizer.padding_side!r}, truncation_side={tokenizer.truncation_side!r}")
    if tokenizer.pad_token_id is None and preprocessor.padding:
        raise _error("raw_strings=True: the tokenizer has no pad token")
    return {
        "template": _template(config.get("post_processor"), vocab),
        "sequence_length": int(preprocessor.sequence_length) if preprocessor.truncation else None,
        "padding": preprocessor.padding,
        "pad_to_multiple_of": preprocessor.pad_to_multiple_of,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "names": list(tokenizer.model_input_names),
        # added tokens ([CLS], [MASK], ...) typed in the text: matched on the raw text, before the
        # normaliser, as the Rust tokenizer does (lstrip / rstrip only absorb whitespace, which the
        # pre-tokenizer drops anyway)
        "added": [(t["content"], int(t["id"])) for t in config.get("added_tokens", [])
                  if t.get("content") and not t.get("normalized") and not t.get("single_word")],
    }


def _message_fields(buf):
    """(field number, the field's raw bytes) of one protobuf message, in order."""
    from keras_models.tokenizers.sentencepiece_model import _varint

    pos, out = 0, []
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((key >> 3, bytes(buf[start:pos])))
    return out


def _varint_bytes(value):
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _with_normalizer(proto, name, charsmap):
    """The SentencePiece ModelProto with its normalizer spec replaced: ``name`` (and ``charsmap``),
    a dummy prefix, extra whitespace removed; no denormalizer."""
    spec = b"".join([b"\x0a" + _varint_bytes(len(name)) + name.encode(),
                     b"\x12" + _varint_bytes(len(charsmap)) + charsmap if charsmap else b"",
                     b"\x18\x01\x20\x01\x28\x01"])
    kept = b"".join(raw for number, raw in _message_fields(proto) if number not in (3, 5))
    return kept + b"\x1a" + _varint_bytes(len(spec)) + spec


def _sentencepiece_spec(preprocessor, tokenizer, config):
    """A Unigram tokenizer.json run as its SentencePiece ``.model`` (tensorflow_text's op): our
    normalizer steps in TF ops before it (the Precompiled map, when it is the model's own and the
    last step, inside it), whitespace splitting, and the model's piece ids mapped to ours by text
    (T5 and ALBERT: the same ids; XLM-R: fairseq's offset and <s> <pad> </s> <unk> first)."""
    import base64

    from keras_models.tokenizers.sentencepiece_model import UNIGRAM, parse_model

    proto = getattr(tokenizer, "sentencepiece_proto", None)
    if proto is None:
        raise _error(f"raw_strings=True: this SentencePiece (Unigram) tokenizer ({tokenizer.class_name}) was not "
                     "loaded from a preset with its SentencePiece .model file (spiece.model, "
                     "sentencepiece.bpe.model, ...), which the SavedModel runs; export with token inputs "
                     "(raw_strings=False) or add the .model file to the preset")
    name = tokenizer.sentencepiece_file
    try:
        model = parse_model(proto)
    except Exception as e:
        raise _error(f"raw_strings=True: the preset's {name} cannot be read: {e}") from e
    if model.trainer_spec.model_type != UNIGRAM or model.trainer_spec.treat_whitespace_as_suffix:
        raise _error(f"raw_strings=True: the preset's {name} is not a unigram model with whitespace as prefix, "
                     "unlike its tokenizer.json")
    pre = config.get("pre_tokenizer") or {}
    stages = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in stages]
    meta = stages[-1] if stages else {}
    if kinds not in (["WhitespaceSplit", "Metaspace"], ["Metaspace"]) or meta.get("replacement") != "\u2581" \
            or meta.get("prepend_scheme", "always") != "always" or not meta.get("split", True):
        raise _error(f"raw_strings=True: the SentencePiece tokenizer's pre-tokenizer {json.dumps(pre)[:200]} is not "
                     "supported (WhitespaceSplit + Metaspace('▁', prepend_scheme='always', split=True), or that "
                     "Metaspace alone)")
    steps = _normalizer_steps(config.get("normalizer"))
    charsmap = b""
    if any(op == "precompiled" for op, _ in steps):
        if steps[-1][0] != "precompiled" or sum(op == "precompiled" for op, _ in steps) != 1:
            raise _error("raw_strings=True: the tokenizer's Precompiled normalizer is not its last step")
        charsmap = base64.b64decode(steps.pop()[1])
        if charsmap != model.normalizer_spec.precompiled_charsmap:
            raise _error(f"raw_strings=True: the tokenizer's Precompiled normalizer is not the character map of "
                         f"the preset's {name}")
    vocab = {t: i for t, i in tokenizer.get_vocab().items()}
    unk = vocab.get(model.trainer_spec.unk_piece)
    if unk is None:
        raise _error(f"raw_strings=True: the SentencePiece unknown piece {model.trainer_spec.unk_piece!r} is not "
                     "in the tokenizer's vocabulary")
    return {
        **_common_spec(preprocessor, tokenizer, config, vocab),
        "model": "sentencepiece",
        "normalizer": steps,
        "whitespace": _WHITESPACE if kinds[0] == "WhitespaceSplit" else " ",
        "proto": _with_normalizer(proto, model.normalizer_spec.name or "identity" if charsmap else "identity",
                                  charsmap),
        "id_map": [vocab.get(p.piece, unk) for p in model.pieces],
    }


def _module_class():
    import tensorflow as tf

    class RawTextTokenizer(tf.Module):
        """Strings (batch,) -> the token inputs, as the model's preprocessor gives them."""

        def __init__(self, spec, input_specs):
            super().__init__()
            import tensorflow_text as tf_text

            # held in a plain object: tf.Module would wrap (and try to save) dicts and lists
            big = ("vocab", "proto", "id_map")
            self._settings = types.SimpleNamespace(spec={k: v for k, v in spec.items() if k not in big},
                                                   input_specs=dict(input_specs))
            if spec["model"] == "sentencepiece":
                # the .model with the normalizer our tokenizer.json runs (Precompiled or none), each
                # word on its own with its "▁" prefix; no <s> / </s>: the template adds them
                self.sentencepiece = tf_text.SentencepieceTokenizer(
                    model=spec["proto"], out_type=tf.int32, add_bos=False, add_eos=False)
                self.id_map = tf.constant(spec["id_map"], tf.int32)
            else:
                self.wordpiece = tf_text.FastWordpieceTokenizer(
                    vocab=spec["vocab"], suffix_indicator=spec["prefix"],
                    max_bytes_per_word=4 * spec["max_chars"] + 4, token_out_type=tf.int32,
                    unknown_token=spec["unk_token"], no_pretokenization=True, support_detokenization=False)

        def normalize(self, texts):
            import tensorflow_text as tf_text

            x = texts
            for op, arg in self._settings.spec["normalizer"]:
                if op == "clean_text":
                    x = tf.strings.regex_replace(x, f"[{_CONTROL}]", "")
                    x = tf.strings.regex_replace(x, f"[{_WHITESPACE}]", " ")
                elif op == "chinese":
                    x = tf.strings.regex_replace(x, f"[{_CJK}]", r" \0 ")
                elif op == "strip_accents":
                    x = tf.strings.regex_replace(tf_text.normalize_utf8(x, "NFD"), r"\p{Mn}", "")
                elif op == "remove_marks":
                    x = tf.strings.regex_replace(x, r"\p{Mn}", "")
                elif op == "unicode":
                    x = tf_text.normalize_utf8(x, arg)
                elif op == "lowercase":  # per character, as Rust does (ICU would give a final ς)
                    x = tf.strings.lower(tf.strings.regex_replace(x, "Σ", "σ"), encoding="utf-8")
                elif op == "replace":
                    pattern, content = arg
                    x = tf.strings.regex_replace(x, pattern, content.replace("\\", "\\\\"))
            return x

        def __call__(self, texts):
            import tensorflow_text as tf_text

            spec = self._settings.spec
            if spec["added"]:  # (batch, segments): added tokens are segments of their own
                contents = [c for c, _ in sorted(spec["added"], key=lambda a: -len(a[0]))]
                pattern = "|".join(re.escape(c) for c in contents)
                # a sentinel split, not tf_text.regex_split: that one stops at a NUL character
                marked = tf.strings.regex_replace(texts, f"({pattern})", "\ufdd0\\1\ufdd0")
                segments = tf.strings.split(marked, sep="\ufdd0")
            else:
                segments = tf.RaggedTensor.from_tensor(texts[:, None])
            flat_segments = segments.flat_values
            if spec["added"]:
                table = tf.constant([c for c, _ in spec["added"]])
                hits = tf.equal(flat_segments[:, None], table[None, :])
                is_added = tf.reduce_any(hits, axis=1)
                added_ids = tf.gather(tf.constant([i for _, i in spec["added"]], tf.int32),
                                      tf.argmax(tf.cast(hits, tf.int32), axis=1))
                flat_segments = tf.where(is_added, tf.constant(""), flat_segments)
            if spec["model"] == "sentencepiece":
                # SentencePiece (and ICU's normalisation) read C strings: NUL, which the Rust
                # tokenizer keeps (an unknown character), would end the text; another unknown one
                flat_segments = tf.strings.regex_replace(flat_segments, "\x00", "\ufdd1")
            x = self.normalize(flat_segments)
            if spec["model"] == "sentencepiece":
                if any(op in ("strip_accents", "unicode") for op, _ in spec["normalizer"]):
                    # decomposed Hangul: the Rust Precompiled step maps a syllable's jamo one by one
                    # (a grapheme over 5 bytes is not looked up whole), SentencePiece's own normaliser
                    # recomposes them; an unknown character between them keeps them apart, and
                    # unknown characters fuse into one <unk> as the jamo do in Rust
                    x = tf.strings.regex_replace(x, "([\u1100-\u11ff])([\u1100-\u11ff])", "\\1\ufdd1\\2")
                    x = tf.strings.regex_replace(x, "([\u1100-\u11ff])([\u1100-\u11ff])", "\\1\ufdd1\\2")
                words = tf_text.regex_split(x, f"[{spec['whitespace']}]+")
                pieces = tf.gather(self.id_map, self.sentencepiece.tokenize(words.flat_values))
            else:
                if spec["split_punctuation"]:
                    words = tf_text.regex_split(x, f"[{_WHITESPACE}]+|[{_PUNCT}]", f"[{_PUNCT}]")
                else:
                    words = tf_text.regex_split(x, f"[{_WHITESPACE}]+")
                flat = words.flat_values
                too_long = tf.strings.length(flat, unit="UTF8_CHAR") > spec["max_chars"]
                flat = tf.where(too_long, tf.constant(spec["unk_token"]), flat)
                pieces = self.wordpiece.tokenize(flat)  # (words, pieces)
            ids = words.with_flat_values(pieces).merge_dims(1, 2)  # (segments, tokens)
            if spec["added"]:
                single = tf.RaggedTensor.from_row_lengths(tf.boolean_mask(added_ids, is_added),
                                                          tf.cast(is_added, tf.int64))
                ids = tf.concat([ids, single], axis=1)
            ids = segments.with_flat_values(ids).merge_dims(1, 2)  # (batch, tokens)
            prefix, prefix_types, seq_type, suffix, suffix_types = spec["template"]
            if spec["sequence_length"] is not None:
                ids = ids[:, :max(spec["sequence_length"] - len(prefix) - len(suffix), 0)]
            batch = ids.nrows()

            def const(values):
                row = tf.constant(values, tf.int32, shape=[len(values)])
                return tf.RaggedTensor.from_tensor(tf.tile(row[None], [batch, 1]))

            full = tf.concat([const(prefix), ids, const(suffix)], axis=1)
            types = tf.concat([const(prefix_types), tf.ones_like(ids) * seq_type, const(suffix_types)], axis=1)
            lengths = full.row_lengths()
            if spec["padding"] == "max_length" and spec["sequence_length"] is not None:
                target = tf.cast(spec["sequence_length"], tf.int64)
            else:
                target = tf.reduce_max(tf.concat([lengths, tf.zeros([1], tf.int64)], 0))
            multiple = spec["pad_to_multiple_of"]
            if multiple:
                target = (target + multiple - 1) // multiple * multiple
            out = {
                "input_ids": full.to_tensor(default_value=spec["pad_id"], shape=tf.stack([batch, target])),
                "token_type_ids": types.to_tensor(default_value=0, shape=tf.stack([batch, target])),
                "attention_mask": tf.sequence_mask(lengths, target, dtype=tf.int32),
            }
            return {name: tf.cast(out[name], dtype) for name, dtype in self._settings.input_specs.items()}

    return RawTextTokenizer


def tf_tokenizer(preprocessor, input_names=("input_ids", "token_type_ids", "attention_mask"), dtype="int32"):
    """A ``tf.Module`` mapping strings ``(batch,)`` to the token inputs (``input_names``) as
    ``preprocessor.features`` gives them, in TensorFlow / tensorflow_text ops."""
    import tensorflow as tf

    spec = tokenizer_spec(preprocessor)
    names = [n for n in input_names if n != "token_type_ids" or n in spec["names"]]
    return _module_class()(spec, {n: tf.as_dtype(dtype) for n in names})


def _check_probe(tokenize, preprocessor, input_names):
    """The TF tokenization of PROBE_TEXTS must equal the preprocessor's."""
    import tensorflow as tf

    probe = list(PROBE_TEXTS) + [f"a {token} b{token}c" for token in preprocessor.tokenizer.get_added_vocab()]
    ours = {k: v.numpy() for k, v in tokenize(tf.constant(probe)).items()}
    expected = preprocessor.features(probe)
    for name in input_names:
        want, got = np.asarray(expected[name]), ours[name]
        if want.shape != got.shape:
            raise _error(f"raw_strings=True: the TensorFlow tokenization gives {name} of shape {got.shape} on the "
                         f"probe corpus where the preprocessor gives {want.shape}; not exported")
        for i, text in enumerate(probe):
            if not np.array_equal(want[i], got[i]):
                raise _error(f"raw_strings=True: the TensorFlow tokenization differs from the preprocessor's on "
                             f"{text!r} ({name}: {got[i].tolist()} vs {want[i].tolist()}); not exported")


def export_raw_strings(model, export_tokens, filepath, verbose=None):
    """Write a SavedModel at ``filepath`` whose ``serving_default`` takes strings; ``export_tokens(path)``
    writes the plain token-input SavedModel (``export_model``). Returns the path."""
    spec = tokenizer_spec(getattr(model, "preprocessor", None))
    try:
        import tensorflow as tf
        importlib.import_module("tensorflow_text")  # fails early, with the install hint
    except ImportError as e:
        raise _error(f"raw_strings=True needs tensorflow and tensorflow-text (pip install 'keras-models[tf-serving]'): "
                     f"{e}") from e
    from keras_models.export import input_signature

    signature = input_signature(model)[0]
    names = [n for n in ("input_ids", "token_type_ids", "attention_mask") if n in signature]
    unknown = sorted(set(signature) - set(names))
    if unknown:
        raise _error(f"raw_strings=True: the model takes inputs {unknown} that the tokenizer does not give")
    input_specs = {n: tf.as_dtype(str(signature[n].dtype)) for n in names}
    tokenizer = _module_class()(spec, input_specs)
    _check_probe(tokenizer, model.preprocessor, names)

    path = Path(os.fspath(filepath))
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        export_tokens(str(work / "tokens"))
        token_model = tf.saved_model.load(str(work / "tokens"))
        root = tf.Module()
        root.token_model = token_model
        root.tokenizer = tokenizer
        texts = tf.TensorSpec([None], tf.string, name="texts")

        @tf.function(input_signature=[texts])
        def serve(texts):
            return token_model.serve(tokenizer(texts))

        @tf.function(input_signature=[texts])
        def tokenize(texts):
            return tokenizer(texts)

        root.serve, root.tokenize, root.serve_tokens = serve, tokenize, token_model.serve
        tf.saved_model.save(root, str(work / "out"), signatures={
            "serving_default": serve.get_concrete_function(), "tokenize": tokenize.get_concrete_function()},
            # serving only: a re-saved jax2tf function's gradient captures its arguments
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        if os.path.lexists(path):
            _remove_old_saved_model(path)
        os.replace(work / "out", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if verbose:
        print(f"Saved a raw-string SavedModel at {path} (signatures: serving_default(texts), tokenize(texts))")
    return path


# what tf.saved_model.save writes: the only entries an existing target may hold to be replaced
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "variables", "assets", "fingerprint.pb",
                        "keras_metadata.pb"}


def _remove_old_saved_model(path):
    """Delete an earlier SavedModel at ``path`` before the new one takes its place; anything else
    there (a file, the working directory, a folder with a README, ``.git`` or other files of the
    user) is refused, untouched."""
    path = Path(path)
    entries = set(os.listdir(path)) if path.is_dir() and not path.is_symlink() else None
    if (entries is None or "saved_model.pb" not in entries or entries - _SAVED_MODEL_ENTRIES
            or path.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents)):
        raise _error(f"raw_strings=True: {str(path)!r} exists and is not a SavedModel this export may replace "
                     "(only a folder holding just saved_model.pb, variables/, assets/ and fingerprint.pb is); "
                     "choose a new path or remove it yourself")
    shutil.rmtree(path)
