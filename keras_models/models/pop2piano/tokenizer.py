"""Pop2Piano's MIDI-event tokenizer (Transformers' ``Pop2PianoTokenizer``, python-only there).

Files: ``vocab.json`` maps ``"<value>_<TYPE>"`` (TYPE one of TOKEN_SPECIAL, TOKEN_NOTE,
TOKEN_VELOCITY, TOKEN_TIME) to ids, and ``tokenizer_config.json`` holds ``default_velocity``,
``num_bars`` and the special tokens (their text is a number: pad "0", eos "1", bos "2", unk "-1").
As in Transformers 5, a special token that is not in ``added_tokens_decoder`` / ``added_tokens.json``
gets the next id after the vocabulary (bos, eos, unk, pad in that order); that is the id padding
uses, while decoding stops at the id ``int(eos_token)``.

* Encoding (``tokenizer(notes)``): notes ``(n, 4)`` = onset index, offset index, pitch, velocity
  (rounded to integers), or a list of ``pretty_midi.Note`` (start/end read as indices). Per time
  index with events: a TIME token, then per event (onsets first in the order given, offsets with
  velocity 0) a VELOCITY token (0 or 1) when it changes and a NOTE token. A batch is a 3-D array or
  a list of lists; ``padding`` / ``max_length`` / ``truncation`` (cut on the right) as Transformers.
* Decoding (``batch_decode(token_ids, feature_extractor_output)``): each row of ids is cut after
  the batch's last eos; TIME tokens advance a beat index (capped at the row's cutoff), NOTE tokens
  open a note or close the open one of that pitch (re-opening it when the velocity is not 0),
  notes left open end at the later of the last index and the cutoff; every note gets
  ``default_velocity``. Indices become seconds through the ``extrapolated_beatstep`` of the
  feature extractor (shifted by ``beatsteps[0]``) in ``pretty_midi`` objects (optional package
  ``pretty-midi``, extra ``keras-models[midi]``). A batch of several songs is split at the all-zero
  rows of ``attention_mask``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, TokenizerFileError

TYPES = ("TOKEN_SPECIAL", "TOKEN_NOTE", "TOKEN_VELOCITY", "TOKEN_TIME")
SPECIAL_ORDER = ("bos_token", "eos_token", "unk_token", "pad_token")
DEFAULTS = {"bos_token": "2", "eos_token": "1", "unk_token": "-1", "pad_token": "0"}


def _content(token):
    return str(token.get("content")) if isinstance(token, dict) else str(token)


def _pretty_midi():
    from keras_models.preprocessing.optional import require

    return require("pretty_midi", "pretty-midi", "midi", "Pop2PianoTokenizer (MIDI notes)")


class Pop2PianoTokenizer:
    """MIDI notes <-> Pop2Piano token ids (see the module docstring)."""

    tokenizer_class = "Pop2PianoTokenizer"
    model_input_names = ("token_ids", "attention_mask")

    def __init__(self, vocab, default_velocity=77, num_bars=2, added_tokens=None, padding_side="right", **specials):
        if not isinstance(vocab, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in vocab.items()):
            raise TokenizerFileError("vocab.json: expected a JSON object of '<value>_<TYPE>' -> id")
        self.vocab = dict(vocab)
        self.decoder = {}
        for key, i in self.vocab.items():
            value, _, kind = key.partition("_")
            try:
                value = int(value)
            except ValueError:
                raise TokenizerFileError(f"vocab.json: entry {key!r} is not '<integer>_<TYPE>'") from None
            if kind not in TYPES:
                raise TokenizerFileError(f"vocab.json: entry {key!r} has type {kind!r}, expected one of {TYPES}")
            self.decoder[i] = (kind, value)
        for key, value in (("default_velocity", default_velocity), ("num_bars", num_bars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "default_velocity" else 1):
                raise TokenizerFileError(f"tokenizer_config.json: {key} must be a "
                                         f"{'non-negative' if key == 'default_velocity' else 'positive'} integer, "
                                         f"got {value!r}")
        self.default_velocity, self.num_bars = default_velocity, num_bars
        if padding_side not in ("left", "right"):
            raise TokenizerFileError(f"tokenizer_config.json: padding_side must be 'left' or 'right', "
                                     f"got {padding_side!r}")
        self.padding_side = padding_side
        self.special_tokens = {}
        for key in SPECIAL_ORDER:
            token = _content(specials.get(key) if specials.get(key) is not None else DEFAULTS[key])
            try:
                int(token)
            except ValueError:
                raise TokenizerFileError(f"tokenizer_config.json: {key} must be an integer written as text "
                                         f"(Pop2Piano reads int({key})), got {token!r}") from None
            self.special_tokens[key] = token
        self.added = {str(k): int(v) for k, v in (added_tokens or {}).items()}
        for key in SPECIAL_ORDER:  # Transformers 5 appends specials missing from the files
            token = self.special_tokens[key]
            if token not in self.vocab and token not in self.added:
                self.added[token] = len(self.vocab) + len(self.added)
        self.n_note_slots = sum(kind == "TOKEN_NOTE" for kind, _ in self.decoder.values()) + 1

    # --- loading / saving -----------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, **overrides):
        from keras_models.presets.resolve import resolve_preset
        from keras_models.tokenizers.loading import read_json

        folder = Path(resolve_preset(preset))
        path = folder / "vocab.json"
        if not path.is_file():
            raise TokenizerFileError(f"{folder} has no vocab.json: Pop2PianoTokenizer reads it")
        vocab = read_json(path, "vocab file")
        cfg_path = folder / "tokenizer_config.json"
        config = read_json(cfg_path, "tokenizer config") if cfg_path.is_file() else {}
        if not isinstance(config, dict):
            raise TokenizerFileError(f"{cfg_path}: expected a JSON object")
        added = {}
        added_path = folder / "added_tokens.json"
        if added_path.is_file():
            data = read_json(added_path, "added tokens file")
            if not isinstance(data, dict):
                raise TokenizerFileError(f"{added_path}: expected a JSON object of token -> id")
            added.update(data)
        decoder = config.get("added_tokens_decoder") or {}
        if not isinstance(decoder, dict):
            raise TokenizerFileError(f"{cfg_path}: added_tokens_decoder must be a JSON object")
        for i, token in decoder.items():
            try:
                added[_content(token)] = int(i)
            except ValueError:
                raise TokenizerFileError(f"{cfg_path}: added_tokens_decoder key {i!r} is not an id") from None
        kwargs = {k: config[k] for k in ("default_velocity", "num_bars", "padding_side") + SPECIAL_ORDER
                  if config.get(k) is not None}
        kwargs.update(overrides)
        return cls(vocab, added_tokens={k: v for k, v in added.items() if k not in vocab}, **kwargs)

    from_pretrained = from_preset

    def save_to_preset(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(self.vocab), encoding="utf-8")
        config = {"tokenizer_class": "Pop2PianoTokenizer", "default_velocity": self.default_velocity,
                  "num_bars": self.num_bars, "padding_side": self.padding_side, **self.special_tokens,
                  "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False,
                                                    "rstrip": False, "single_word": False, "special": True}
                                           for t, i in self.added.items()}}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    save_pretrained = save_to_preset

    # --- ids ------------------------------------------------------------------------------------------
    def _special_id(self, key):
        token = self.special_tokens[key]
        return self.vocab[token] if token in self.vocab else self.added[token]

    @property
    def pad_token_id(self):
        return self._special_id("pad_token")

    @property
    def eos_token_id(self):
        return self._special_id("eos_token")

    @property
    def bos_token_id(self):
        return self._special_id("bos_token")

    @property
    def unk_token_id(self):
        return self._special_id("unk_token")

    @property
    def vocab_size(self):
        return len(self.vocab)

    def get_vocab(self):
        return {**self.vocab, **self.added}

    def token_id(self, value, kind):
        """The id of ``"<value>_<kind>"``; ``int(unk_token)`` when the vocabulary lacks it."""
        return self.vocab.get(f"{value}_{kind}", int(self.special_tokens["unk_token"]))

    def id_to_event(self, token_id):
        """(type, value) of an id; an unknown id reads as TIME ``int(unk_token)``."""
        return self.decoder.get(int(token_id), ("TOKEN_TIME", int(self.special_tokens["unk_token"])))

    # --- notes -> ids ---------------------------------------------------------------------------------
    def _note_array(self, notes, where):
        if isinstance(notes, np.ndarray):
            arr = notes
        else:
            notes = list(notes)
            if not notes:
                raise InputError(f"{where}: no notes")
            if all(hasattr(n, "start") and hasattr(n, "pitch") for n in notes):
                arr = np.array([[n.start, n.end, n.pitch, n.velocity] for n in notes])
            else:
                arr = np.asarray(notes)
        if arr.size == 0:
            raise InputError(f"{where}: no notes")
        if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
            raise InputError(f"{where}: notes must be numbers (onset, offset, pitch, velocity)")
        arr = arr.reshape(-1, 4) if arr.ndim == 1 and arr.size % 4 == 0 else arr
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise InputError(f"{where}: notes must have shape (n, 4) = onset, offset, pitch, velocity; "
                             f"got {arr.shape}")
        arr = np.round(arr).astype(np.int64)
        if (arr[:, :2] < 0).any():
            raise InputError(f"{where}: onset / offset indices must be >= 0")
        return arr

    def encode(self, notes, name="notes"):
        """Token ids of one song's notes."""
        arr = self._note_array(notes, name)
        events = {}
        for onset, offset, pitch, velocity in arr.tolist():
            events.setdefault(onset, []).append((pitch, velocity))
            events.setdefault(offset, []).append((pitch, 0))
        ids, velocity_now = [], 0
        for index in sorted(events):
            ids.append(self.token_id(index, "TOKEN_TIME"))
            for pitch, velocity in events[index]:
                on = int(velocity > 0)
                if on != velocity_now:
                    velocity_now = on
                    ids.append(self.token_id(on, "TOKEN_VELOCITY"))
                ids.append(self.token_id(pitch, "TOKEN_NOTE"))
        return ids

    def __call__(self, notes, padding=False, truncation=None, max_length=None, pad_to_multiple_of=None,
                 return_attention_mask=None, return_tensors=None, **_):
        if isinstance(notes, np.ndarray):
            batched = notes.ndim == 3
        else:
            if len(notes) == 0:
                raise InputError("notes: empty")
            batched = isinstance(notes[0], list)
        rows = [self.encode(n, f"notes[{i}]") for i, n in enumerate(notes)] if batched else [self.encode(notes)]
        if truncation not in (None, False, "do_not_truncate") and max_length:
            if truncation not in (True, "longest_first", "only_first"):
                raise ValueError(f"truncation must be True/False, 'longest_first' or 'only_first', got {truncation!r}")
            rows = [r[:max_length] for r in rows]
        if padding is True:
            padding = "longest"
        if padding in (False, None, "do_not_pad"):
            width = None
        elif padding == "longest":
            width = max(len(r) for r in rows)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length=")
            width = max_length
        else:
            raise ValueError(f"padding must be True/False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if width is not None and pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        masks = []
        for i, r in enumerate(rows):
            extra = max(0, width - len(r)) if width is not None else 0
            fill, ones = [self.pad_token_id] * extra, [1] * len(r)
            if self.padding_side == "left":
                rows[i], mask = fill + r, [0] * extra + ones
            else:
                rows[i], mask = r + fill, ones + [0] * extra
            masks.append(mask)
        out = {"token_ids": rows if batched else rows[0]}
        if return_attention_mask is not False:
            out["attention_mask"] = masks if batched else masks[0]
        if return_tensors is not None:
            if return_tensors != "np":
                raise ValueError(f"return_tensors must be None or 'np', got {return_tensors!r}")
            if len({len(r) for r in rows}) > 1:
                raise InputError("notes: rows of different lengths cannot be one array; pass padding=True")
            out = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
        return out

    # --- ids -> notes ---------------------------------------------------------------------------------
    def tokens_to_notes(self, ids, start_idx, cutoff_time_idx=None):
        """(n, 4) int array of (onset index, offset index, pitch, velocity) from one row of ids,
        ordered by onset then offset; ``[]`` when it holds no note."""
        current, velocity = start_idx, 0
        open_at = [None] * self.n_note_slots
        notes = []
        for token in ids:
            kind, number = self.id_to_event(token)
            if kind == "TOKEN_SPECIAL":
                if number == 1:
                    break
            elif kind == "TOKEN_TIME":
                current = current + number
                if cutoff_time_idx is not None:
                    current = min(current, cutoff_time_idx)
            elif kind == "TOKEN_VELOCITY":
                velocity = number
            elif kind == "TOKEN_NOTE":
                if not 0 <= number < self.n_note_slots:
                    raise InputError(f"token id {int(token)}: note {number} is outside the vocabulary's "
                                     f"{self.n_note_slots - 1} note tokens")
                onset = open_at[number]
                if onset is None:
                    open_at[number] = current
                elif onset < current:
                    notes.append([onset, current, number, self.default_velocity])
                    open_at[number] = None if velocity == 0 else current
        for pitch, onset in enumerate(open_at):
            if onset is None:
                continue
            cutoff = onset + 1 if cutoff_time_idx is None else max(cutoff_time_idx, onset + 1)
            notes.append([onset, max(current, cutoff), pitch, self.default_velocity])
        if not notes:
            return []
        notes = np.array(notes)
        return notes[np.argsort(notes[:, 0] * 128 + notes[:, 1])]

    def batch_tokens_to_notes(self, tokens, beat_offset_idx=0, bars_per_batch=2, cutoff_time_idx=12):
        """Notes of the rows of one song, row ``i`` starting ``i * bars_per_batch * 4`` beats on."""
        found = []
        for i, row in enumerate(tokens):
            start = beat_offset_idx + i * bars_per_batch * 4
            notes = self.tokens_to_notes(row, start_idx=start, cutoff_time_idx=cutoff_time_idx + start)
            if len(notes):
                found.append(notes)
        return np.concatenate(found, axis=0) if found else []

    def notes_to_midi(self, notes, beatstep, offset_sec=0.0):
        """A ``pretty_midi.PrettyMIDI`` (resolution 384, 120 bpm, one piano) of (onset, offset, pitch,
        velocity) index notes timed by ``beatstep``; notes that do not end after they start are dropped."""
        pretty_midi = _pretty_midi()
        midi = pretty_midi.PrettyMIDI(resolution=384, initial_tempo=120.0)
        piano = pretty_midi.Instrument(program=0)
        piano.notes = [pretty_midi.Note(velocity=velocity, pitch=pitch, start=beatstep[onset] - offset_sec,
                                        end=beatstep[offset] - offset_sec)
                       for onset, offset, pitch, velocity in notes]
        midi.instruments.append(piano)
        midi.remove_invalid_notes()
        return midi

    def batch_decode(self, token_ids, feature_extractor_output, return_midi=True):
        """``{"notes": [pretty_midi.Note, ...], "pretty_midi_objects": [PrettyMIDI per song]}`` from the
        generated ids (rows of all songs, each song's rows followed by one separator row, as the
        feature extractor lays out ``input_features``) and the feature extractor's output."""
        _pretty_midi()
        fe = feature_extractor_output
        tokens = np.asarray(token_ids)
        if tokens.ndim != 2:
            raise InputError(f"token_ids must be (rows, length), got shape {tokens.shape}")
        for key in ("beatsteps", "extrapolated_beatstep"):
            if key not in fe:
                raise InputError(f"feature_extractor_output has no {key!r}: pass the feature extractor's output")
        beatsteps_all, ext_all = np.asarray(fe["beatsteps"]), np.asarray(fe["extrapolated_beatstep"])
        masks = ("attention_mask", "attention_mask_beatsteps", "attention_mask_extrapolated_beatstep")
        with_masks = all(k in fe for k in masks)
        if with_masks:
            row_mask = np.asarray(fe["attention_mask"])
            if int((row_mask[:, 0] == 0).sum()) != beatsteps_all.shape[0] or \
                    beatsteps_all.shape[0] != ext_all.shape[0]:
                raise InputError(f"feature_extractor_output: {beatsteps_all.shape[0]} beatsteps rows, "
                                 f"{ext_all.shape[0]} extrapolated_beatstep rows and "
                                 f"{int((row_mask[:, 0] == 0).sum())} songs in attention_mask do not match")
            if row_mask.shape[0] != tokens.shape[0]:
                raise InputError(f"attention_mask has {row_mask.shape[0]} rows but token_ids has {tokens.shape[0]}")
            ends = np.where(row_mask[:, 0] == 0)[0].tolist()
        else:
            if beatsteps_all.shape[0] != 1 or ext_all.shape[0] != 1:
                raise InputError("feature_extractor_output: several songs need attention_mask, "
                                 "attention_mask_beatsteps and attention_mask_extrapolated_beatstep "
                                 "(return_attention_mask=True)")
            ends = [tokens.shape[0]]
        eos = int(self.special_tokens["eos_token"])
        notes_out, midis, start = [], [], 0
        for song, end in enumerate(ends):
            rows = tokens[start:end]
            hits = np.where(rows == eos)[1]
            if hits.size == 0:
                raise InputError(f"token_ids: song {song} (rows {start}..{end - 1}) has no eos id {eos}")
            rows = rows[:, :hits.max() + 1]
            beatsteps, ext = beatsteps_all[song], ext_all[song]
            if with_masks:
                beatsteps = beatsteps[:np.where(np.asarray(fe["attention_mask_beatsteps"])[song] == 1)[0].max() + 1]
                ext = ext[:np.where(np.asarray(fe["attention_mask_extrapolated_beatstep"])[song] == 1)[0].max() + 1]
            notes = self.batch_tokens_to_notes(rows, 0, self.num_bars, (self.num_bars + 1) * 4)
            midi = self.notes_to_midi(notes, ext, offset_sec=ext[0])
            for note in midi.instruments[0].notes:
                note.start += beatsteps[0]
                note.end += beatsteps[0]
                notes_out.append(note)
            midis.append(midi)
            start = end + 1  # past the separator row
        out = {"notes": notes_out}
        if return_midi:
            out["pretty_midi_objects"] = midis
        return out


__all__ = ["Pop2PianoTokenizer"]
