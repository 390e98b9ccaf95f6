"""GPTSw3Tokenizer (a python-only class in Transformers): its ``spiece.model`` run as SentencePiece runs it,
after the class's own text clean-up, and decoded the way the class joins pieces and special tokens.

Clean-up (before SentencePiece, on each stretch of text between special tokens): control and other
non-printing characters removed (U+0000-U+0008, U+000B-U+001F, U+007F-U+009F, U+00A0, U+00AD, U+200B),
the class's list of odd spaces (en / em / thin / hair / narrow no-break / ideographic spaces, U+FFFC,
U+0084) made plain spaces, then NFC. No special tokens are added around the ids. Decoding: the pieces
between special tokens are decoded by SentencePiece; a special token is written right after them, with
one space before a run of special tokens. Special tokens: as tokenizer_config.json names them, else
<pad>, <unk>, <|endoftext|> (eos) and <s> (bos).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import normalizers

from keras_models.errors import TokenizerFileError

MODEL_FILE = "spiece.model"
_NON_PRINTING = "".join(chr(c) for c in [*range(0, 9), *range(11, 32), *range(127, 160), 160, 173, 8203])
_SPACES = "\u2002\u2003\u2005\u2008\u2009\u200a\u202f\u3000\ufffc\u0084"


def _char_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):04x}}}" for c in chars) + "]"


def _bytes_text(data: bytes) -> str:
    """UTF-8 characters of ``data``, each byte that starts no complete character a U+FFFD (SentencePiece)."""
    out, i = [], 0
    while i < len(data):
        lead = data[i]
        size = 1 if lead < 0x80 else 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF5 else 0
        try:
            out.append(bytes(data[i:i + size]).decode("utf-8") if size else "\ufffd")
            i += max(size, 1)
        except UnicodeDecodeError:
            out.append("\ufffd")
            i += 1
    return "".join(out)


class GptSw3Decoder:
    """Transformers' GPTSw3Tokenizer ``convert_tokens_to_string`` over our pipeline's SentencePiece decoder."""

    def __init__(self, backend: RustTokenizer):
        self.backend = backend
        self.specials: set[str] = set()
        self.unk = "<unk>"
        self.dummy_prefix = True

    def id_to_token(self, tok, index: int) -> str:
        token = self.backend.id_to_token(int(index))
        return token if token is not None else self.unk

    def _sp_decode(self, pieces) -> str:
        """SentencePiece's decoding: "▁" a space, <0xNN> byte pieces joined and read as UTF-8 (each byte
        of no complete character becomes U+FFFD); with the dummy prefix, the "▁"s the text starts with
        are dropped (all of them, as SentencePiece does)."""
        out, buffer, leading = [], bytearray(), self.dummy_prefix
        for piece in pieces:
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                try:
                    buffer.append(int(piece[3:5], 16))
                    leading = False
                    continue
                except ValueError:
                    pass
            if buffer:
                out.append(_bytes_text(buffer))
                buffer = bytearray()
            if leading:
                piece = piece.lstrip("▁")
                leading = not piece
            out.append(piece.replace("▁", " "))
        if buffer:
            out.append(_bytes_text(buffer))
        return "".join(out)

    def tokens_to_string(self, tokens) -> str:
        out, current, prev_special = "", [], False
        for token in tokens:
            if token in self.specials:
                if not prev_special:
                    out += " "
                out += self._sp_decode(current) + token
                prev_special, current = True, []
            else:
                current.append(token)
                prev_special = False
        return out + self._sp_decode(current)


def gpt_sw3_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers import sentencepiece_model as spm
    from keras_models.tokenizers.spm_convert import _generic

    path = folder / MODEL_FILE
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no {MODEL_FILE}: tokenizer class {class_name} reads it")
    for key in ("do_lower_case", "remove_space", "keep_accents"):
        if config.get(key):
            raise TokenizerFileError(f"{folder / 'tokenizer_config.json'} sets {key}=True, which "
                                     f"{class_name} itself ignores; refusing rather than guessing")
    model = spm.load_model(path)
    own = {}
    backend = _generic(model, own)  # SentencePiece's own normalizer / dummy prefix / decoder (legacy)
    clean = [normalizers.Replace(Regex(_char_class(_NON_PRINTING)), ""),
             normalizers.Replace(Regex(_char_class(_SPACES)), " "), normalizers.NFC()]
    backend.normalizer = normalizers.Sequence(clean + ([backend.normalizer] if backend.normalizer else []))
    decoder = GptSw3Decoder(backend)
    decoder.unk = str(config.get("unk_token") or info["specials"]["unk_token"])
    decoder.dummy_prefix = bool(model.normalizer_spec.add_dummy_prefix)
    config["_python_decoder"] = decoder
    return backend


def finish_gpt_sw3(tok, folder: Path):
    """No ids added around the text; the decoder learns the special tokens."""
    tok._backend.post_processor = None
    tok.python_decoder.specials = set(tok.all_special_tokens)
    tok.source_files = {MODEL_FILE: folder / MODEL_FILE}


__all__ = ["GptSw3Decoder", "gpt_sw3_backend", "finish_gpt_sw3"]
