"""A reader for SentencePiece ``.model`` files (a serialized ``ModelProto``), without protobuf.

When the optional ``sentencepiece`` package is installed its compiled protobuf module parses the
file instead (same fields, ~200x faster on large vocabularies: tools/bench/bench_readers.py); this
wire-format reader keeps ``.model`` files loading without it, and names what is wrong with a
corrupted file.

Only the fields tokenizer conversion needs are decoded: the pieces (text, score, type), the
trainer spec (model type, byte fallback, special piece ids and texts) and the normalizer spec
(precompiled character map, dummy prefix, whitespace handling). Unknown fields are skipped as the
protobuf wire format allows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from keras_models.errors import TokenizerFileError

# SentencePiece piece types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.model_type
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4


@dataclass
class Piece:
    piece: str
    score: float = 0.0
    type: int = NORMAL


@dataclass
class TrainerSpec:
    model_type: int = UNIGRAM
    vocab_size: int = 8000
    treat_whitespace_as_suffix: bool = False
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"


@dataclass
class NormalizerSpec:
    name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


@dataclass
class SentencePieceModel:
    pieces: list[Piece] = field(default_factory=list)
    trainer_spec: TrainerSpec = field(default_factory=TrainerSpec)
    normalizer_spec: NormalizerSpec = field(default_factory=NormalizerSpec)


class _WireError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint longer than 10 bytes")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) over one message's bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _WireError("truncated 64-bit field")
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _WireError(f"field {number} runs past the end of its message")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _WireError("truncated 32-bit field")
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise _WireError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _int32(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(v) -> str:
    if not isinstance(v, (bytes, bytearray)):
        raise _WireError("expected a string field")
    return bytes(v).decode("utf-8")


def _parse_piece(buf: bytes) -> Piece:
    p = Piece(piece="")
    for number, wire, v in _fields(buf):
        if number == 1 and wire == 2:
            p.piece = _text(v)
        elif number == 2 and wire == 5:
            p.score = struct.unpack("<f", v)[0]
        elif number == 3 and wire == 0:
            p.type = _int32(v)
    return p


_TRAINER_INTS = {3: "model_type", 4: "vocab_size", 40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
_TRAINER_BOOLS = {24: "treat_whitespace_as_suffix", 35: "byte_fallback"}
_TRAINER_STRS = {45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}


def _parse_trainer(buf: bytes) -> TrainerSpec:
    spec = TrainerSpec()
    for number, wire, v in _fields(buf):
        if wire == 0 and number in _TRAINER_INTS:
            setattr(spec, _TRAINER_INTS[number], _int32(v))
        elif wire == 0 and number in _TRAINER_BOOLS:
            setattr(spec, _TRAINER_BOOLS[number], bool(v))
        elif wire == 2 and number in _TRAINER_STRS:
            setattr(spec, _TRAINER_STRS[number], _text(v))
    return spec


def _parse_normalizer(buf: bytes) -> NormalizerSpec:
    spec = NormalizerSpec()
    for number, wire, v in _fields(buf):
        if number == 1 and wire == 2:
            spec.name = _text(v)
        elif number == 2 and wire == 2:
            spec.precompiled_charsmap = bytes(v)
        elif number == 3 and wire == 0:
            spec.add_dummy_prefix = bool(v)
        elif number == 4 and wire == 0:
            spec.remove_extra_whitespaces = bool(v)
        elif number == 5 and wire == 0:
            spec.escape_whitespaces = bool(v)
    return spec


def _parse_with_protobuf(data: bytes) -> SentencePieceModel | None:
    """The same fields through protobuf's compiled parser (``sentencepiece.sentencepiece_model_pb2``)
    when the ``sentencepiece`` package is installed: ~200x faster on large vocabularies (a 250k-piece
    model parses in milliseconds instead of about a second; docs/performance.md). None when the
    package is missing or the bytes do not parse (the wire parser below then reports the error)."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except Exception:  # not installed (it is optional), or an incompatible protobuf runtime
        return None
    try:
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(data)
        t, n = proto.trainer_spec, proto.normalizer_spec
        return SentencePieceModel(
            pieces=[Piece(p.piece, p.score, p.type) for p in proto.pieces],
            trainer_spec=TrainerSpec(
                model_type=t.model_type, vocab_size=t.vocab_size,
                treat_whitespace_as_suffix=t.treat_whitespace_as_suffix, byte_fallback=t.byte_fallback,
                unk_id=t.unk_id, bos_id=t.bos_id, eos_id=t.eos_id, pad_id=t.pad_id, unk_piece=t.unk_piece,
                bos_piece=t.bos_piece, eos_piece=t.eos_piece, pad_piece=t.pad_piece),
            normalizer_spec=NormalizerSpec(
                name=n.name, precompiled_charsmap=bytes(n.precompiled_charsmap), add_dummy_prefix=n.add_dummy_prefix,
                remove_extra_whitespaces=n.remove_extra_whitespaces, escape_whitespaces=n.escape_whitespaces))
    except Exception:
        return None


def parse_model(data: bytes, use_protobuf: bool = True) -> SentencePieceModel:
    """A serialized ModelProto -> SentencePieceModel: protobuf's parser when available (see
    ``_parse_with_protobuf``), else this module's wire-format reader; both give the same result."""
    if use_protobuf:
        model = _parse_with_protobuf(data)
        if model is not None:
            return model
    model = SentencePieceModel()
    for number, wire, v in _fields(data):
        if wire != 2:
            continue
        if number == 1:
            model.pieces.append(_parse_piece(v))
        elif number == 2:
            model.trainer_spec = _parse_trainer(v)
        elif number == 3:
            model.normalizer_spec = _parse_normalizer(v)
    return model


def load_model(path) -> SentencePieceModel:
    """Parse a SentencePiece model file; a corrupted file raises TokenizerFileError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerFileError(f"Cannot read SentencePiece model {path}: {e}") from e
    try:
        model = parse_model(data)
    except (_WireError, UnicodeDecodeError, struct.error) as e:
        raise TokenizerFileError(f"SentencePiece model {path} is corrupted or not a SentencePiece file: {e}") from e
    if not model.pieces:
        raise TokenizerFileError(f"SentencePiece model {path} holds no pieces (empty or not a SentencePiece file)")
    if any(not p.piece for p in model.pieces):
        raise TokenizerFileError(f"SentencePiece model {path} has an empty piece: the file is corrupted")
    spec = model.trainer_spec
    if spec.model_type not in (UNIGRAM, BPE):
        raise TokenizerFileError(
            f"SentencePiece model {path} has model_type {spec.model_type}; only unigram (1) and BPE (2) are supported"
        )
    if not 0 <= spec.unk_id < len(model.pieces):
        raise TokenizerFileError(
            f"SentencePiece model {path}: unk_id {spec.unk_id} is outside the {len(model.pieces)} pieces"
        )
    return model
