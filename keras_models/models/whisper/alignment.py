"""Host-side numerics of Whisper's long-form decoding, as Transformers computes them: the median
filter and DTW of token timestamps, the compression ratio of temperature fallback, and the cut of a
window's ids into timestamped segments."""

import numpy as np

from keras_models.generation.config import GenerationError


def _median_filter(x, width):
    """Transformers' ``_median_filter`` over the last axis (reflect padding; odd ``width``)."""
    if width <= 0 or width % 2 != 1:
        raise GenerationError(f"generate: median_filter_width={width} must be a positive odd number")
    half = width // 2
    if x.shape[-1] <= half:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.sort(windows, axis=-1)[..., half]


def _one_frame_count(frames_left, rows):
    """Whether the window's ``rows`` all have the same count of audio frames left (Transformers
    then crops the alignment weights twice: ``_token_timestamps``)."""
    if frames_left is None:
        return False
    return len({int(np.asarray(frames_left).reshape(-1)[r]) for r in rows}) == 1


def _dtw(matrix):
    """Transformers' ``_dynamic_time_warping`` (float32 costs, its tie order): the (text, time)
    index path through ``matrix`` (tokens, frames)."""
    rows, cols = matrix.shape
    cost = np.full((rows + 1, cols + 1), np.inf, "float32")
    trace = -np.ones((rows + 1, cols + 1), "float32")
    cost[0, 0] = 0
    for j in range(1, cols + 1):
        for i in range(1, rows + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = matrix[i - 1, j - 1] + c
            trace[i, j] = t
    i, j = rows, cols
    trace[0, :] = 2
    trace[:, 0] = 1
    text, time = [], []
    while i > 0 or j > 0:
        text.append(i - 1)
        time.append(j - 1)
        if trace[i, j] == 0:
            i, j = i - 1, j - 1
        elif trace[i, j] == 1:
            i -= 1
        else:
            j -= 1
    return np.asarray(text[::-1]), np.asarray(time[::-1])


def compression_ratio(tokens, vocab_size):
    """Transformers' ``_retrieve_compression_ratio``: the ids as little-endian bytes (as many bytes
    as the vocabulary needs), raw length over zlib-compressed length."""
    import math
    import zlib

    width = int(math.log2(vocab_size) / 8) + 1
    data = b"".join(int(t).to_bytes(width, "little") for t in tokens)
    return len(data) / len(zlib.compress(data))


def _segments(seq, begin, time_offset, size, precision, stride):
    """Transformers' ``_retrieve_segment``: one window's ids (without prompt and end of text) ->
    (segments, frames to seek). A pair of timestamps closes a segment; a window ending with a
    single timestamp is consumed whole, otherwise the next one starts at the last pair."""
    is_ts = [t >= begin for t in seq]
    single_ending = is_ts[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(is_ts) - 1) if is_ts[i] and is_ts[i + 1]]
    if cuts:
        if single_ending:
            cuts.append(len(seq))
        else:
            cuts[-1] += 1
        found, last = [], 0
        for k, cut in enumerate(cuts):
            piece = seq[last:cut]
            end_at = -1 if k < len(cuts) - 1 or single_ending else -2
            found.append({"start": time_offset + (piece[0] - begin) * precision,
                          "end": time_offset + (piece[end_at] - begin) * precision, "tokens": piece})
            last = cut
        offset = size if single_ending else (seq[last - 2] - begin) * stride
        return found, offset
    stamps = [i for i, t in enumerate(is_ts) if t]
    end = float(int(size * 0.01 / precision))
    if stamps and seq[stamps[-1]] != begin:
        end = float(seq[stamps[-1]] - begin)
    return [{"start": time_offset, "end": time_offset + end * precision, "tokens": seq}], size
