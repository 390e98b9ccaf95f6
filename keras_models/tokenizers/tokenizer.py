"""`Tokenizer`: Transformers' tokenizer API over a Rust `tokenizers.Tokenizer`.

Only numpy, `tokenizers` and (lazily, for chat templates) jinja2 are imported here, so the module is
cheap to import under any Keras backend and never pulls in TensorFlow.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from tokenizers import AddedToken
from tokenizers import Tokenizer as RustTokenizer

from keras_models.errors import InputError
from keras_models.tokenizers import _classes
from keras_models.tokenizers._special import SpecialTokensMixin
from keras_models.tokenizers._task_inputs import TaskInputsMixin
from keras_models.tokenizers.padding import padding_strategy, truncation_strategy

VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)
def _clean_up_tokenization(text: str) -> str:
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def _to_id_list(ids):
    """Accept int, list, tuple, numpy or any array with ``tolist`` (torch/jax/tf tensors)."""
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):
        ids = ids.tolist()
    if isinstance(ids, (list, tuple)):
        return [_to_id_list(i) if isinstance(i, (list, tuple)) or hasattr(i, "tolist") else int(i) for i in ids]
    return int(ids)


class Tokenizer(SpecialTokensMixin, TaskInputsMixin):
    """A tokenizer with Hugging Face Transformers' call conventions.

    Build one with :meth:`from_preset` (any checkpoint format) or directly from a
    ``tokenizers.Tokenizer`` and a ``tokenizer_config.json``-style dict.
    """

    def __init__(self, backend: RustTokenizer, config: dict | None = None, *, class_name: str | None = None):
        config = dict(config or {})
        self._backend = backend
        self._lock = threading.RLock()
        self.class_name = _classes.normalise_class_name(class_name or config.get("tokenizer_class")) or (
            "TokenizersBackend"
        )
        info = _classes.class_info(self.class_name)
        self.init_config = config
        self.model_max_length = int(config.get("model_max_length") or VERY_LARGE_INTEGER)
        self.padding_side = config.get("padding_side") or info.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side") or "right"
        for side_name in ("padding_side", "truncation_side"):
            if getattr(self, side_name) not in ("left", "right"):
                raise ValueError(f"{side_name} must be 'left' or 'right', got {getattr(self, side_name)!r}")
        self.model_input_names = list(config.get("model_input_names") or info["inputs"])
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.split_special_tokens = bool(config.get("split_special_tokens", False))
        self.pad_token_type_id = int(config.get("pad_token_type_id", 0) or 0)
        self.chat_template = config.get("chat_template")
        if isinstance(self.chat_template, (list, tuple)):
            self.chat_template = {t["name"]: t["template"] for t in self.chat_template}
        self.name_or_path = config.get("name_or_path", "")
        # A tokenizer.json may carry fixed padding / truncation: ours are set per call.
        backend.no_padding()
        backend.no_truncation()
        self._state = (None, None)
        self._init_special_tokens(config, info)
        # classes whose tokens are bytes written as Latin-1 characters (ByT5), over a ByteLevel pipeline
        self._byte_tokens = None
        if info.get("latin1_byte_tokens"):
            from keras_models.tokenizers.builders import byte_level_chars

            table = byte_level_chars()
            self._byte_tokens = ({c: chr(b) for b, c in table.items()}, {chr(b): c for b, c in table.items()})
        self._fixed_vocab_size = info.get("fixed_vocab_size")
        self._decode_errors = info.get("decode_errors")
        self._clean_up_any_model = bool(info.get("clean_up_any_model"))  # python-only classes over BPE

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_preset(cls, preset, **overrides) -> "Tokenizer":
        """Load from a preset handle: a local folder, ``hf://org/name[@rev]`` or a named preset."""
        from keras_models.tokenizers.loading import load_tokenizer

        return load_tokenizer(preset, cls=cls, **overrides)

    from_pretrained = from_preset

    def save_pretrained(self, folder) -> tuple[str, ...]:
        """Write tokenizer.json + tokenizer_config.json (+ chat_template.jinja), loadable by Transformers."""
        from keras_models.tokenizers.saving import save_tokenizer

        return save_tokenizer(self, Path(folder))

    save_to_preset = save_pretrained

    @property
    def backend_tokenizer(self) -> RustTokenizer:
        return self._backend

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (Transformers' ``vocab_size``)."""
        if self._fixed_vocab_size is not None:
            return self._fixed_vocab_size
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        vocab = self._backend.get_vocab(with_added_tokens=True)
        if self._byte_tokens is not None:
            to_latin1 = self._byte_tokens[0]
            added = self.get_added_vocab()
            vocab = {(t if t in added else to_latin1.get(t, t)): i for t, i in vocab.items()}
        return vocab

    def _to_user_tokens(self, tokens: list[str]) -> list[str]:
        if self._byte_tokens is None:
            return tokens
        to_latin1 = self._byte_tokens[0]
        return [to_latin1.get(t, t) if len(t) == 1 else t for t in tokens]

    def get_added_vocab(self) -> dict[str, int]:
        decoder = self._backend.get_added_tokens_decoder()
        return {tok.content: i for i, tok in sorted(decoder.items())}

    def convert_tokens_to_ids(self, tokens):
        if tokens is None:
            return None
        if isinstance(tokens, str):
            if self._byte_tokens is not None and len(tokens) == 1:
                tokens = self._byte_tokens[1].get(tokens, tokens)
            index = self._backend.token_to_id(tokens)
            return self.unk_token_id if index is None else index
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        ids = _to_id_list(ids)
        if self.python_decoder is not None:  # a class decoding through its own table (FSMT's target vocabulary)
            if isinstance(ids, int):
                return self.python_decoder.id_to_token(self, ids)
            skip = set(self.all_special_ids) if skip_special_tokens else ()
            return [self.python_decoder.id_to_token(self, i) for i in ids if i not in skip]
        if isinstance(ids, int):
            return self._to_user_tokens([self._backend.id_to_token(ids)])[0]
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return self._to_user_tokens([self._backend.id_to_token(i) for i in ids if i not in skip])

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        if self.python_decoder is not None:
            return self.python_decoder.tokens_to_string(tokens)
        if self._byte_tokens is not None:
            added = self.get_added_vocab()
            data = b"".join(t.encode() if (t in added or len(t) != 1) else bytes([ord(t) % 256]) for t in tokens)
            return data.decode("utf-8", errors=self._decode_errors or "replace")
        decoder = self._backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        if isinstance(new_tokens, (str, AddedToken)):
            new_tokens = [new_tokens]
        new_tokens = [
            t if isinstance(t, AddedToken) else AddedToken(t, special=special_tokens, normalized=not special_tokens)
            for t in new_tokens
        ]
        if _classes.class_info(self.class_name).get("raw_added_tokens"):  # matched on the text as written
            new_tokens = [
                AddedToken(t.content, single_word=t.single_word, lstrip=t.lstrip, rstrip=t.rstrip, normalized=False,
                           special=t.special)
                for t in new_tokens
            ]
        if special_tokens:
            return self._backend.add_special_tokens(new_tokens)
        return self._backend.add_tokens(new_tokens)

    # ------------------------------------------------------------------ encoding
    def _configure(self, padding, truncation, max_length, stride, pad_to_multiple_of, padding_side):
        """Set the Rust tokenizer's padding / truncation (only when they change)."""
        trunc_target = None
        if truncation is not None:
            trunc_target = {
                "max_length": int(max_length),
                "stride": int(stride),
                "strategy": truncation,
                "direction": self.truncation_side,
            }
        pad_target = None
        if padding is not None:
            if self.pad_token is None or self.pad_token_id is None:
                raise InputError(
                    "Asking to pad but the tokenizer has no padding token: set `tokenizer.pad_token` "
                    "(e.g. `tokenizer.pad_token = tokenizer.eos_token`) or add one with `add_special_tokens`."
                )
            pad_target = {
                "length": int(max_length) if padding == "max_length" else None,
                "direction": padding_side or self.padding_side,
                "pad_id": self.pad_token_id,
                "pad_type_id": self.pad_token_type_id,
                "pad_token": self.pad_token,
                "pad_to_multiple_of": pad_to_multiple_of,
            }
        if self._state[0] != trunc_target:
            if trunc_target is None:
                self._backend.no_truncation()
            else:
                self._backend.enable_truncation(**trunc_target)
        if self._state[1] != pad_target:
            if pad_target is None:
                self._backend.no_padding()
            else:
                self._backend.enable_padding(**pad_target)
        self._state = (trunc_target, pad_target)

    def _resolve_lengths(self, padding, truncation, max_length, pad_to_multiple_of):
        if max_length is not None and padding in (False, None) and truncation is None:
            truncation = "longest_first"
        padding = padding_strategy(padding)
        truncation = truncation_strategy(truncation)
        if max_length is None:
            if padding == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    padding = None
                else:
                    max_length = self.model_max_length
            if truncation is not None:
                if self.model_max_length > LARGE_INTEGER:
                    truncation = None
                else:
                    max_length = self.model_max_length
        if padding == "max_length" and max_length is None:
            padding = None
        if (
            truncation is not None
            and padding is not None
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"Truncation and padding are both activated but truncation length ({max_length}) is not a "
                f"multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return padding, truncation, max_length

    def _encode_batch(
        self,
        texts,
        pairs=None,
        *,
        add_special_tokens=True,
        padding=False,
        truncation=None,
        max_length=None,
        stride=0,
        pad_to_multiple_of=None,
        padding_side=None,
        is_split_into_words=False,
        need_offsets=True,
    ):
        """Rust encodings of a batch; ``need_offsets=False`` skips offset tracking (faster)."""
        if _classes.class_info(self.class_name).get("phonemize"):  # Wav2Vec2Phoneme: phonemes in, or refused
            from keras_models.errors import InputError
            from keras_models.tokenizers.wav2vec2_ctc import phonemize_refusal

            reason = phonemize_refusal(self.init_config)
            if reason is not None:
                raise InputError(reason)
        padding, truncation, max_length = self._resolve_lengths(padding, truncation, max_length, pad_to_multiple_of)
        if padding_side is not None and padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
        with self._lock:
            self._configure(padding, truncation, max_length, stride, pad_to_multiple_of, padding_side)
            if self._backend.encode_special_tokens != self.split_special_tokens:
                self._backend.encode_special_tokens = self.split_special_tokens
            encode = self._backend.encode_batch
            if not need_offsets and hasattr(self._backend, "encode_batch_fast"):
                encode = self._backend.encode_batch_fast
            return encode(inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words)

    def __call__(
        self, text=None, text_pair=None, *, text_target=None, text_pair_target=None, table=None, query=None,
        answer=None, max_cell_length=None, **kwargs
    ) -> dict:
        """Tokenize one text (or pair) or a batch; returns a dict keyed by Transformers' names.

        Keywords are Transformers': ``add_special_tokens``, ``padding`` (True / 'longest' /
        'max_length'), ``truncation`` (True / 'longest_first' / 'only_first' / 'only_second'),
        ``max_length`` (default: ``model_max_length``), ``stride``, ``is_split_into_words``,
        ``pad_to_multiple_of``, ``padding_side``, ``return_token_type_ids``,
        ``return_attention_mask``, ``return_overflowing_tokens``, ``return_special_tokens_mask``,
        ``return_offsets_mapping``, ``return_length``. ``text_target`` (and ``text_pair_target``)
        are tokenized the same way and returned as ``labels`` (alone when ``text`` is None).

        With ``return_tensors="np"`` (the default) values are int32 numpy arrays of shape
        (batch, seq); a single text gives batch 1. Ragged batches need ``padding``. With
        ``return_tensors=None`` values are Python lists, shaped like Transformers' output.
        """
        if _classes.class_info(self.class_name).get("tapex"):
            text, text_pair = self._tapex_text(text, text_pair, table, query, answer, max_cell_length, kwargs)
        elif table is not None or query is not None or answer is not None or max_cell_length is not None:
            raise TypeError(
                f"table / query / answer / max_cell_length are TAPEX arguments; this tokenizer is {self.class_name}"
            )
        if text is None and text_target is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        infill = self._infill_request(text, text_pair, kwargs)
        if infill is not None:
            out = self._infill(*infill, **kwargs)
        else:
            out = self._call_one(text, text_pair, **kwargs) if text is not None else None
        if text_target is None:
            return out
        # a class with its own target-side pipeline (Marian's target.spm) tokenizes the targets with it
        target_tok = getattr(self, "target_tokenizer", None) or self
        target = target_tok._call_one(text_target, text_pair_target, **kwargs)
        if out is None:
            return target
        out["labels"] = target["input_ids"]
        return out

    def _call_one(
        self,
        text,
        text_pair=None,
        *,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors="np",
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
    ) -> dict:
        if return_tensors not in ("np", None):
            raise ValueError(f"return_tensors must be 'np' or None, got {return_tensors!r}")
        if is_split_into_words:
            batched = isinstance(text, (list, tuple)) and len(text) > 0 and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if not batched and not isinstance(text, (str, list, tuple)):
            raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
        if batched:
            if isinstance(text_pair, str):
                raise TypeError("when text is a batch, text_pair must be a list of the same length")
            if text_pair is not None and len(text_pair) != len(text):
                raise ValueError(f"text has {len(text)} items but text_pair has {len(text_pair)}")
            texts, pairs = list(text), (list(text_pair) if text_pair is not None else None)
        else:
            # like Transformers' fast classes, an empty pair on a single input means no pair (its
            # python-only classes keep it)
            keep = text_pair is not None and _classes.class_info(self.class_name).get("empty_pair_is_pair", False)
            texts, pairs = [text], ([text_pair] if (text_pair or keep) else None)
        for t in texts + (pairs or []):
            if not isinstance(t, (str, list, tuple)):
                raise TypeError(f"text inputs must be str, got {type(t).__name__}")
        if add_special_tokens and not is_split_into_words and not self.split_special_tokens:
            if _classes.class_info(self.class_name).get("eos_not_repeated"):
                texts = [self._drop_final_eos(t) for t in texts]
                pairs = None if pairs is None else [self._drop_final_eos(t) for t in pairs]
        encodings = self._encode_batch(
            texts,
            pairs,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            is_split_into_words=is_split_into_words,
            need_offsets=return_offsets_mapping,
        )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if return_overflowing_tokens:
            rows, mapping = [], []
            for i, e in enumerate(encodings):
                for piece in [e] + list(e.overflowing):
                    rows.append(piece)
                    mapping.append(i)
            encodings = rows
        fields = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            fields["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
            fields["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            fields["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            fields["offset_mapping"] = [e.offsets for e in encodings]
        if return_length:
            fields["length"] = [len(e.ids) for e in encodings]
        if return_overflowing_tokens:
            fields["overflow_to_sample_mapping"] = mapping
        if return_tensors is None:
            if not batched and not return_overflowing_tokens:
                # like Transformers: only per-token fields lose their batch dimension
                return {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in fields.items()}
            return fields
        return {k: self._to_array(k, v) for k, v in fields.items()}

    @staticmethod
    def _to_array(key, rows):
        if key in ("length", "overflow_to_sample_mapping"):
            return np.asarray(rows, dtype=np.int32)
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise ValueError(
                f"Cannot make a numpy array of '{key}': sequences have different lengths {sorted(lengths)}. "
                "Pass padding=True (or 'max_length') with truncation, or return_tensors=None for lists."
            )
        if key == "offset_mapping":
            return np.asarray(rows, dtype=np.int32).reshape(len(rows), -1, 2)
        return np.asarray(rows, dtype=np.int32).reshape(len(rows), -1)

    def _drop_final_eos(self, text: str) -> str:
        """A class that appends eos only when the sequence does not already end with it (ByT5): a text
        ending with the eos token (and the spaces it strips) encodes as the text without it, plus eos."""
        eos = self.eos_token
        if not eos or not text.rstrip().endswith(eos):
            return text
        import re

        token = self._backend.get_added_tokens_decoder().get(self.eos_token_id)
        lstrip, rstrip = (token.lstrip, token.rstrip) if token is not None else (False, False)
        pattern = ("\\s*" if lstrip else "") + re.escape(eos) + ("\\s*" if rstrip else "") + "\\Z"
        match = re.search(pattern, text)
        return text if match is None else text[: match.start()]

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, **kwargs) -> list[int]:
        """Ids of one text (or pair), as a Python list, like Transformers' ``encode``."""
        out = self(text, text_pair, add_special_tokens=add_special_tokens, return_tensors=None, **kwargs)
        return out["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        if _classes.class_info(self.class_name).get("tapex") and self.init_config.get("do_lower_case", True):
            text = text.lower()  # Transformers' TapexTokenizer.tokenize lower-cases too (do_lower_case)
        encoding = self._encode_batch([text], [pair] if pair is not None else None, add_special_tokens=add_special_tokens)[0]
        if self._byte_tokens is not None:  # by id: a matched added token's text holds the spaces it strips
            return self.convert_ids_to_tokens(encoding.ids)
        if pair is None and not add_special_tokens and _classes.class_info(self.class_name).get("tokenize_gives_pieces"):
            return self._pieces(text, encoding)
        return encoding.tokens

    def _pieces(self, text: str, encoding) -> list[str]:
        """The pieces themselves, an unknown one included (Transformers' SentencePiece classes give them,
        the ids being another vocabulary's): the text between added tokens goes through the normalizer and
        pre-tokenizer again, which is where the pieces come from."""
        added = set(self.get_added_vocab().values())
        backend, out, start = self._backend, [], 0

        def pieces(segment):
            if backend.normalizer is not None:
                segment = backend.normalizer.normalize_str(segment)
            return [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(segment)]

        for index, (begin, end) in zip(encoding.ids, encoding.offsets):
            # an added token matched in the text (not the unknown id the model gives an unknown piece)
            if index in added and backend.id_to_token(index) in text[begin:end]:
                out += pieces(text[start:begin])
                out.append(backend.id_to_token(index))
                start = end
        return out + pieces(text[start:])

    def pad(self, encoded_inputs, padding=True, max_length=None, pad_to_multiple_of=None, padding_side=None,
            return_attention_mask=None, return_tensors="np"):
        """Pad tokenized features (a dict of lists or a list of dicts), like Transformers' ``pad``."""
        from keras_models.tokenizers.padding import pad

        return pad(self, encoded_inputs, padding, max_length, pad_to_multiple_of, padding_side,
                   return_attention_mask, return_tensors)

    # ------------------------------------------------------------------ decoding
    def _exact_decode(self, ids, skip_special_tokens, text):
        """Rust's byte-level decoder writes U+FFFD for invalid UTF-8; a class that drops it instead
        (``decode_errors="ignore"``, ByT5) is decoded again here, only when the text holds one."""
        if self._decode_errors is None or "\ufffd" not in text:
            return text
        return self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens))

    def _decode_one(self, ids, skip_special_tokens, clean_up_tokenization_spaces):
        if self.python_decoder is not None:
            text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens))
            if clean_up_tokenization_spaces is None:
                clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
            return _clean_up_tokenization(text) if clean_up_tokenization_spaces else text
        text = self._exact_decode(ids, skip_special_tokens, self._backend.decode(ids, skip_special_tokens=skip_special_tokens))
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        # The cleanup is meant for WordPiece output; Transformers skips it for BPE models.
        if clean_up_tokenization_spaces and (
            type(self._backend.model).__name__ != "BPE" or self._clean_up_any_model
        ):
            text = _clean_up_tokenization(text)
        return text

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None):
        """Text of one id sequence; a batch (2-D) gives a list of texts."""
        ids = _to_id_list(token_ids)
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], list):
            return self.batch_decode(ids, skip_special_tokens, clean_up_tokenization_spaces)
        return self._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None):
        seqs = _to_id_list(sequences)
        if clean_up_tokenization_spaces is None and not self.clean_up_tokenization_spaces and self.python_decoder is None:
            texts = self._backend.decode_batch(seqs, skip_special_tokens=skip_special_tokens)
            return [self._exact_decode(s, skip_special_tokens, t) for s, t in zip(seqs, texts)]
        return [self._decode_one(s, skip_special_tokens, clean_up_tokenization_spaces) for s in seqs]

    # ------------------------------------------------------------------ chat templates
    def apply_chat_template(self, conversation, **kwargs):
        """Render a conversation with the checkpoint's chat template (see chat_template.py)."""
        from keras_models.tokenizers.chat_template import apply_chat_template

        return apply_chat_template(self, conversation, **kwargs)

    # A pre-tokenizer written in Python (FastBpeSplitter): tokenizers cannot serialize it, so copies and
    # pickles carry the pipeline without it and put it back.
    python_pre_tokenizer = None
    python_decoder = None  # decoding done in Python (FSMT: target vocabulary + Moses detokenisation)

    def __getstate__(self):  # for copy.deepcopy and worker processes: the lock is not copyable
        state = dict(self.__dict__)
        state.pop("_lock", None)
        if self.python_pre_tokenizer is not None:
            with self._lock:
                self._backend.pre_tokenizer = self.python_pre_tokenizer.words_pre_tokenizer()
                try:
                    state["_backend"] = self._backend.to_str()
                finally:
                    self._backend.pre_tokenizer = self.python_pre_tokenizer.pre_tokenizer()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if isinstance(self._backend, str):
            self._backend = RustTokenizer.from_str(self._backend)
            self._backend.pre_tokenizer = self.python_pre_tokenizer.pre_tokenizer()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (
            f"Tokenizer(class={self.class_name!r}, vocab_size={self.vocab_size}, len={len(self)}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"special_tokens={self.special_tokens_map})"
        )
