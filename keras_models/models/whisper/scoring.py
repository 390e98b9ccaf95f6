"""Whisper's window scoring for long-form transcription (keras_models.models.whisper.tasks): the
teacher-forced passes behind Transformers 5's temperature fallback (mean log-probability,
compression ratio, no-speech probability) and token timestamps. A mixin of
:class:`~keras_models.models.whisper.tasks.WhisperSeq2SeqLM` (``self.backbone`` a
WhisperBackbone, ``self.project`` its tied output projection)."""

import numpy as np
from keras import ops

from keras_models.generation import backend
from keras_models.models.whisper.alignment import _dtw, _median_filter, compression_ratio


class WindowScoring:
    def _teacher_logits(self, states, ids):
        """(len(ids), vocab) float32 logits of one row decoded teacher-forced on ``states`` (1, src, d)."""
        ids = np.asarray(ids, "int32")[None]
        return np.asarray(ops.convert_to_numpy(self.project(self.backbone.decode(ids, states))), "float32")[0]

    def _no_speech_probs(self, states, prompts, token, init_len):
        """Per row the probability of the no-speech token after the start of transcript (the first
        of the ``init_len`` start tokens at the end of its prompt), from the raw logits."""
        probs = []
        for k, prompt in enumerate(prompts):
            at = len(prompt) - init_len
            logits = self._teacher_logits(states[k: k + 1], prompt[: at + 1])[at].astype("float64")
            e = np.exp(logits - logits.max())
            probs.append(float(e[token] / e.sum()))
        return probs

    def _avg_logprob(self, seq, states, prompt, base, kw, rule, temperature):
        """Transformers' ``_retrieve_avg_logprobs``: the mean log-probability of ``seq`` (end of text
        included) under the processed scores the decode step used (temperature undone)."""
        from keras_models.generation.processors import Processors

        if not seq:
            return 0.0
        config = base.copy().update(**{k: v for k, v in kw.items() if k not in ("seed", "streamer")})
        n_prompt = len(prompt)
        eos = config.eos_token_id
        eos = tuple(np.atleast_1d(eos).tolist()) if eos is not None else ()
        _, min_length = config.resolved_lengths(n_prompt, self.backbone.decoder_max_position_embeddings)
        sampling = bool(config.do_sample)
        procs = Processors(config, min_length, eos, sampling=sampling, prompt_len=n_prompt, timestamps=rule)
        full = list(prompt) + list(seq)
        logits = self._teacher_logits(states, full[:-1])
        buf = np.asarray(full, "int32")[None]
        vocab = logits.shape[-1]
        rescale = temperature if temperature is not None and temperature > 0.0 else 1.0
        total = 0.0
        for j, token in enumerate(seq):
            cur = n_prompt + j
            presence = None
            if procs.needs_presence:
                presence = np.zeros((1, vocab), "float32")
                presence[0, buf[0, :cur]] = 1.0
            at = cur if backend.EAGER_LOOP else ops.convert_to_tensor(cur, "int32")  # as the decode loop has it
            scores = procs(logits[None, cur - 1], buf, at, presence, limit=len(full) + 1)
            scores = np.asarray(ops.convert_to_numpy(scores), "float64")[0] * rescale
            top = scores.max()
            total += scores[token] - top - np.log(np.exp(scores - top).sum())
        return total / len(seq)

    def _token_timestamps(self, states, prompt, new, num_frames, heads, filter_width, crop_twice=False):
        """Transformers' ``_extract_token_timestamps`` for one row: the cross-attention of the
        alignment ``heads`` over the fed tokens (``prompt`` + ``new`` but its last), cropped to
        ``num_frames`` // 2 encoder positions (None: all), standardised over the tokens, median-
        filtered over time, averaged over heads; DTW over the negated matrix; each new token's time
        is where its text index jumps (the prompt's are 0, the last new one repeats the one before)."""
        n_prompt = len(prompt)
        times = np.zeros((n_prompt + len(new),), "float32")
        if len(new) < 2:
            return times
        ids = np.asarray(list(prompt) + list(new[:-1]), "int32")[None]
        layers = sorted({int(layer) for layer, _ in heads})
        weights = self.backbone.decoder_cross_attentions(ids, states, layers)
        w = np.stack([weights[int(layer)][0, int(head)] for layer, head in heads])[:, n_prompt:]
        if num_frames is not None:
            # Transformers crops once more when every row of the window has the same count: the
            # same for a count >= 0; a window starting after the audio (count < 0) loses twice
            # as many positions, possibly all (then every new token gets -0.02 s)
            for _ in range(2 if crop_twice else 1):
                w = w[..., : int(num_frames) // 2]
        if w.shape[-1] == 0:
            w = np.zeros(w.shape[1:], "float32")
        else:
            w = (w - w.mean(axis=-2, keepdims=True)) / w.std(axis=-2, keepdims=True)
            w = _median_filter(w.astype("float32"), filter_width).mean(axis=0)
        text, time = _dtw(-w.astype("float64"))
        jumps = np.pad(np.diff(text), (1, 0), constant_values=1).astype(bool)
        jump_times = time[jumps] * 0.02
        times[n_prompt: n_prompt + len(jump_times)] = jump_times
        times[n_prompt + len(jump_times):] = jump_times[-1]
        return times

    def _need_fallback(self, seq, states, prompt, base, kw, rule, temperature, crt, lpt, nst, no_speech):
        """Transformers' ``_need_fallback``: (needs the next temperature, skipped as silence)."""
        need = skip = False
        if crt is not None and compression_ratio(seq, self.backbone.vocab_size) > crt:
            need = True
        logprob = None
        if lpt is not None:
            logprob = self._avg_logprob(seq, states, prompt, base, kw, rule, temperature)
            if logprob < lpt:
                need = True
        if nst is not None and logprob < lpt and no_speech > nst:
            need, skip = False, True
        return need, skip
