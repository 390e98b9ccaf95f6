"""Special-token bookkeeping (bos/eos/unk/sep/pad/cls/mask + extra special tokens)."""

from __future__ import annotations

from tokenizers import AddedToken

from keras_models.tokenizers._classes import SPECIAL_TOKEN_KEYS


def token_content(value):
    """A special token as written in tokenizer_config.json: a string or an AddedToken dict."""
    if value is None:
        return None
    if isinstance(value, AddedToken):
        return value.content
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


def to_added_token(value, special=True) -> AddedToken:
    if isinstance(value, AddedToken):
        return value
    if isinstance(value, dict):
        fields = {k: v for k, v in value.items() if k in ("single_word", "lstrip", "rstrip", "normalized")}
        fields.setdefault("normalized", False)
        return AddedToken(value["content"], special=bool(value.get("special", special)), **fields)
    return AddedToken(str(value), special=special, normalized=False)


def _make_property(key):
    def getter(self):
        return self._special.get(key)

    def setter(self, value):
        if value is not None:
            self._ensure_special([value])
        self._special[key] = token_content(value)

    def id_getter(self):
        token = self._special.get(key)
        return None if token is None else self.convert_tokens_to_ids(token)

    def id_setter(self, value):
        self._special[key] = None if value is None else self._backend.id_to_token(int(value))

    return property(getter, setter), property(id_getter, id_setter)


class SpecialTokensMixin:
    """Mixed into Tokenizer; expects ``self._backend`` and ``convert_tokens_to_ids``."""

    def _init_special_tokens(self, config: dict, info: dict):
        self._special: dict[str, str | None] = {}
        for key in SPECIAL_TOKEN_KEYS:
            value = config[key] if key in config else info["specials"].get(key)
            self._special[key] = token_content(value)
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        self.named_extra_tokens: dict[str, str] = {}
        if isinstance(extra, dict):
            self.named_extra_tokens = {k: token_content(v) for k, v in extra.items()}
            extra = list(extra.values())
        self._extra_special = [token_content(v) for v in extra]
        # Custom *_token keys (e.g. image_token) are model-specific special tokens.
        for key, value in config.items():
            if key.endswith("_token") and key not in SPECIAL_TOKEN_KEYS and isinstance(value, (str, dict)):
                content = token_content(value)
                if content:
                    self.named_extra_tokens[key] = content
        raw = [config.get(k, info["specials"].get(k)) for k in SPECIAL_TOKEN_KEYS] + list(extra)
        # a class's own named special tokens (ProphetNet's x_sep_token): Transformers counts them among
        # the named special tokens (special_tokens_map, all_special_tokens), with the class default
        self._named_special_keys: list[str] = []
        for key, default in (info.get("named_specials") or {}).items():
            value = config[key] if key in config else default
            if value is None:
                continue
            self.named_extra_tokens[key] = token_content(value)
            self._named_special_keys.append(key)
            raw.append(value)
        self._ensure_special([v for v in raw if v is not None])

    def _ensure_special(self, values):
        """Register tokens as special in the Rust tokenizer unless it already knows them as added tokens."""
        known = {t.content for t in self._backend.get_added_tokens_decoder().values()}
        new = []
        for value in values:
            content = token_content(value)
            if content and content not in known:
                new.append(to_added_token(value))
                known.add(content)
        if new:
            # one call, in order, each token keeping its own `special` flag (SentencePiece user-defined
            # pieces are matched whole but are not special, so skip_special_tokens keeps them)
            self._backend.add_tokens(new)

    bos_token, bos_token_id = _make_property("bos_token")
    eos_token, eos_token_id = _make_property("eos_token")
    unk_token, unk_token_id = _make_property("unk_token")
    sep_token, sep_token_id = _make_property("sep_token")
    pad_token, pad_token_id = _make_property("pad_token")
    cls_token, cls_token_id = _make_property("cls_token")
    mask_token, mask_token_id = _make_property("mask_token")

    @property
    def extra_special_tokens(self) -> list[str]:
        return list(self._extra_special)

    additional_special_tokens = extra_special_tokens

    @property
    def special_tokens_map(self) -> dict:
        """The named special tokens that are set (Transformers 5 leaves the extra ones out)."""
        named = {k: v for k, v in self._special.items() if v is not None}
        for key in getattr(self, "_named_special_keys", ()):
            if self.named_extra_tokens.get(key) is not None:
                named[key] = self.named_extra_tokens[key]
        return named

    @property
    def all_special_tokens(self) -> list[str]:
        seen = []
        for tok in list(self.special_tokens_map.values()) + self._extra_special:
            if tok not in seen:
                seen.append(tok)
        return seen

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    def add_special_tokens(self, special_tokens_dict: dict, replace_extra_special_tokens: bool = True) -> int:
        """Add named special tokens (``{"pad_token": "[PAD]"}``) and/or ``extra_special_tokens``."""
        before = len(self)
        to_add = []
        for key, value in special_tokens_dict.items():
            if key in ("additional_special_tokens", "extra_special_tokens"):
                values = list(value)
                contents = [token_content(v) for v in values]
                if replace_extra_special_tokens:
                    self._extra_special = contents
                else:
                    self._extra_special += [c for c in contents if c not in self._extra_special]
                to_add += values
            elif key in SPECIAL_TOKEN_KEYS or key.endswith("_token"):
                to_add.append(value)
                if key in SPECIAL_TOKEN_KEYS:
                    self._special[key] = token_content(value)
                else:
                    self.named_extra_tokens[key] = token_content(value)
            else:
                raise ValueError(f"Unknown special token key {key!r}; expected one of {SPECIAL_TOKEN_KEYS}")
        self._ensure_special(to_add)
        return len(self) - before
