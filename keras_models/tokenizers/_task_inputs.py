"""Call forms of particular tokenizers, mixed into :class:`~keras_models.tokenizers.Tokenizer`:
CodeLlama infilling (``suffix=`` / a ``fill_token`` in the text) and TAPEX tables
(``table=, query=, answer=``). Each turns the call into the plain text / pair call."""

from __future__ import annotations

from tokenizers import Tokenizer as RustTokenizer

from keras_models.tokenizers import _classes


class TaskInputsMixin:
    def _infill_request(self, text, text_pair, kwargs):
        """CodeLlama infilling: ``(prefix, suffix, suffix_first)`` when the call asks for it (``suffix=``, or
        a text holding ``fill_token``), else None; ``suffix`` / ``suffix_first`` are popped from ``kwargs``."""
        suffix, suffix_first = kwargs.pop("suffix", None), kwargs.pop("suffix_first", False)
        if not _classes.class_info(self.class_name).get("infill"):
            if suffix is not None or suffix_first:
                raise TypeError(f"suffix / suffix_first are CodeLlama infilling arguments; this tokenizer is "
                                f"{self.class_name}")
            return None
        fill = self.named_extra_tokens.get("fill_token")
        if suffix is None and text_pair is None and isinstance(text, str) and fill and fill in text:
            parts = text.split(fill)
            if len(parts) != 2:
                raise ValueError(f"text holds fill_token {fill!r} {len(parts) - 1} times; infilling takes one")
            text, suffix = parts
        if suffix is None or suffix == "" or suffix == []:
            return None
        if text_pair is not None:
            raise TypeError("text_pair and suffix cannot both be given: the suffix is the infilling pair")
        if not isinstance(text, str) or not isinstance(suffix, str):
            raise TypeError("infilling takes one prefix string and one suffix string")
        missing = [k for k in ("prefix_token", "middle_token", "suffix_token") if not self.named_extra_tokens.get(k)]
        if missing:
            raise ValueError(f"this tokenizer has no {', '.join(missing)}: it cannot encode an infilling prompt")
        return text, suffix, bool(suffix_first)

    def _infill(self, prefix, suffix, suffix_first, add_special_tokens=True, **kwargs):
        """Transformers' CodeLlama infilling format: [bos] <PRE> " "+prefix <SUF> suffix <MID> (or
        [bos] <PRE> <SUF> suffix <MID> " "+prefix with ``suffix_first``), [eos] with add_eos_token;
        spaces become "▁" with no prefix added (the leading space stands for it)."""
        from tokenizers import normalizers, processors

        named = self.named_extra_tokens
        pre, mid, suf = named["prefix_token"], named["middle_token"], named["suffix_token"]
        ids = {t: self.convert_tokens_to_ids(t) for t in (pre, mid, suf)}
        pair, specials = [], []
        if add_special_tokens and self.init_config.get("add_bos_token", True) and self.bos_token is not None:
            pair.append(self.bos_token)
            ids[self.bos_token] = self.bos_token_id
        pair += [pre, suf, "$B", mid, "$A"] if suffix_first else [pre, "$A", suf, "$B", mid]
        if add_special_tokens and self.init_config.get("add_eos_token", False) and self.eos_token is not None:
            pair.append(self.eos_token)
            ids[self.eos_token] = self.eos_token_id
        specials = [(t, i) for t, i in ids.items()]
        backend = RustTokenizer.from_str(self._backend.to_str())
        backend.normalizer = normalizers.Replace(" ", "▁")
        backend.post_processor = processors.TemplateProcessing(single="$A", pair=pair, special_tokens=specials)
        backend.no_padding()
        backend.no_truncation()
        with self._lock:  # the copy, with no padding / truncation yet, stands in for one call
            saved = self._backend, self._state
            self._backend, self._state = backend, (None, None)
            try:
                return self._call_one(" " + prefix, suffix, add_special_tokens=True, **kwargs)
            finally:
                self._backend, self._state = saved

    def _tapex_text(self, text, text_pair, table, query, answer, max_cell_length, kwargs):
        """TAPEX (Transformers' call signature ``(table, query, answer)``): the flattened, lower-cased text."""
        from keras_models.tokenizers.tapex import tapex_texts

        if table is None:  # positional, as Transformers' TapexTokenizer takes them
            table, text = text, None
            if query is None:
                query, text_pair = text_pair, None
        if text is not None or text_pair is not None:
            raise TypeError("a TAPEX tokenizer takes table=, query= (and answer=), not text and text_pair")
        if table is None:
            raise ValueError("a TAPEX tokenizer needs a table: tokenizer(table=..., query=...)")
        if kwargs.get("truncation") == "drop_rows_to_fit":
            raise ValueError(
                "truncation='drop_rows_to_fit' is not supported (Transformers' TapexTokenizer itself rejects it as "
                "an invalid TruncationStrategy); use truncation=True with max_length"
            )
        return tapex_texts(self, table, query, answer, max_cell_length), None
