"""Speech operators on audio values: voice activity detection, language detection, transcription.

Silero VAD and Whisper as shipped in faster-whisper. Each kernel call receives one Arrow batch of
audio values and:

1. decodes, finds speech (VAD) and computes log-mel features in a background thread, a few
   files ahead of the model (decode and inference overlap);
2. batches 30-second speech chunks *across files* (grouped by language) through faster-whisper's
   batched pipeline, so short clips still fill a batch;
3. maps chunk times back to each file's timeline, as ``BatchedInferencePipeline.transcribe`` does:
   a file's transcript equals that function's on the same file with the same settings.

Bad rows (corrupt, empty, unsupported, over-long audio, no speech) give null results and a reason
in the output's ``error`` field (and the audio value's own ``.audio.error`` for decode failures).

Example:
    >>> from sparkmm.ops import audio
    >>> vad_detect(audio.decode(pa.array([audio._tone(16000, 1, 1.0, hz=0.0)])))[0].as_py()
    []
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from sparkmm.errors import SparkmmError, check_errors_mode, reason
from sparkmm.models import whisper
from sparkmm.models.cache import prefetch
from sparkmm.ops import audio as _audio
from sparkmm.ops.registry import ERRORS, Param, operator
from sparkmm.ops.value import LazyValues

RATE = 16000
CHUNK_SECONDS = 30
_V = LazyValues(_audio.META_TYPE)

SPANS_DDL = "ARRAY<STRUCT<start: DOUBLE, end: DOUBLE>>"
LANGUAGE_DDL = "STRUCT<language: STRING, probability: DOUBLE, error: STRING>"
WORD_DDL = "STRUCT<start: DOUBLE, end: DOUBLE, word: STRING, probability: DOUBLE>"
SEGMENT_DDL = (f"STRUCT<start: DOUBLE, end: DOUBLE, text: STRING, avg_logprob: DOUBLE, no_speech_prob: DOUBLE, "
               f"words: ARRAY<{WORD_DDL}>>")
TRANSCRIPT_DDL = (f"STRUCT<text: STRING, language: STRING, language_probability: DOUBLE, duration: DOUBLE, "
                  f"segments: ARRAY<{SEGMENT_DDL}>, error: STRING>")

_WORD = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("word", pa.string()),
                   ("probability", pa.float64())])
_SEGMENT = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string()),
                      ("avg_logprob", pa.float64()), ("no_speech_prob", pa.float64()),
                      ("words", pa.list_(_WORD))])
_TRANSCRIPT = pa.struct([("text", pa.string()), ("language", pa.string()), ("language_probability", pa.float64()),
                         ("duration", pa.float64()), ("segments", pa.list_(_SEGMENT)), ("error", pa.string())])
_LANGUAGE = pa.struct([("language", pa.string()), ("probability", pa.float64()), ("error", pa.string())])
_SPANS = pa.list_(pa.struct([("start", pa.float64()), ("end", pa.float64())]))

MODEL = Param("model", (("model", "STRING"),), "base",
              doc="faster-whisper size name, model directory or installed model package")
DEVICE = Param("device", (("device", "STRING"),), "auto",
               doc="'auto' (the task's GPU, else CPU), 'cpu', 'cuda', 'cuda:N'")
COMPUTE_TYPE = Param("compute_type", (("compute_type", "STRING"),), "default",
                     doc="CTranslate2 precision; 'default' = int8 on CPU, float16 on GPU")
THREADS = Param("cpu_threads", (("cpu_threads", "INT"),), 0, doc="CPU threads per model; 0 = the task's cores")


# ---- per-file preparation (runs in the prefetch thread) -------------------------------------------

@dataclass
class _File:
    """One row, decoded: 16 kHz mono samples (dropped once features exist), speech spans, chunk features."""

    row: int
    duration: float = 0.0
    error: str | None = None
    spans: list[dict[str, int]] = field(default_factory=list)  # VAD speech, in samples
    clips: list[dict[str, int]] = field(default_factory=list)  # what was transcribed, in samples
    chunk_meta: list[dict[str, Any]] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)  # unpadded log-mel per chunk
    pcm: np.ndarray | None = None


def _decode(row: int, data: bytes | None, m: dict | None) -> _File:
    from faster_whisper import decode_audio

    if m is None:
        return _File(row, error=None)
    if m.get("error"):
        return _File(row, error=m["error"])
    try:
        pcm = decode_audio(io.BytesIO(_audio.source_bytes(data, m)), sampling_rate=RATE)
    except Exception as e:  # one bad file must not fail the batch
        return _File(row, error=reason("decode_failed", f"{type(e).__name__}: {e}"))
    return _File(row, duration=len(pcm) / RATE, pcm=pcm)


def _vad_options(threshold: float = 0.5, min_speech_duration_ms: int = 0, min_silence_duration_ms: int = 2000,
                 speech_pad_ms: int = 400, max_speech_duration_s: float = float("inf")):
    from faster_whisper.vad import VadOptions

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return VadOptions(threshold=threshold, min_speech_duration_ms=int(min_speech_duration_ms),
                      min_silence_duration_ms=int(min_silence_duration_ms), speech_pad_ms=int(speech_pad_ms),
                      max_speech_duration_s=max_speech_duration_s)


def _no_speech(f: _File) -> str:
    return reason("no_speech", f"no speech found in {f.duration:.2f} s of audio")


def _files(values: pa.Array) -> tuple[list[tuple[int, bytes | None, dict | None]], int]:
    data, metas = _V.split(values)
    if data is None:
        raise TypeError("speech operators need full audio values (data + meta): pass the audio column")
    return list(zip(range(len(metas)), data, metas)), len(metas)


def _raise_if(errors: str, f: _File, metas: list, what: str) -> None:
    if errors == "raise" and f.error is not None and metas[f.row] is not None:
        name = metas[f.row].get("source") or f"row {f.row} of the batch"
        raise SparkmmError(f"{what} failed for {name}: {f.error}")


# ---- vad_detect ---------------------------------------------------------------------------------

VAD_PARAMS = (
    Param("threshold", (("threshold", "DOUBLE"),), 0.5, doc="speech probability above which a frame is speech"),
    Param("min_speech_duration_ms", (("min_speech_duration_ms", "INT"),), 250, doc="shorter speech is dropped"),
    Param("min_silence_duration_ms", (("min_silence_duration_ms", "INT"),), 500,
          doc="silence needed to end a span"),
    Param("speech_pad_ms", (("speech_pad_ms", "INT"),), 100, doc="padding added to each side of a span"),
)


@operator("audio", input_type=_audio.AUDIO_DDL, output_type=SPANS_DDL, params=VAD_PARAMS + (ERRORS,))
def vad_detect(values: pa.Array, threshold: float = 0.5, min_speech_duration_ms: int = 250,
               min_silence_duration_ms: int = 500, speech_pad_ms: int = 100, errors: str = "ignore") -> pa.Array:
    """Speech spans (start, end in seconds) found by Silero VAD; [] for silence, null for bad audio.

    Example:
        >>> from sparkmm.ops import audio
        >>> vad_detect(audio.decode(pa.array([b"junk"])))[0].as_py() is None
        True
    """
    from faster_whisper.vad import get_speech_timestamps

    check_errors_mode(errors)
    options = _vad_options(threshold, min_speech_duration_ms, min_silence_duration_ms, speech_pad_ms)
    rows, n = _files(values)
    metas = [m for _, _, m in rows]
    out: list[Any] = [None] * n
    for f in prefetch(lambda r: _decode(*r), rows):
        _raise_if(errors, f, metas, "audio vad_detect")
        if f.pcm is None:
            continue
        spans = get_speech_timestamps(f.pcm, options, sampling_rate=RATE)
        out[f.row] = [{"start": round(s["start"] / RATE, 3), "end": round(s["end"] / RATE, 3)} for s in spans]
    return pa.array(out, _SPANS)


# ---- detect_language -----------------------------------------------------------------------------

@operator("audio", input_type=_audio.AUDIO_DDL, output_type=LANGUAGE_DDL,
          params=(MODEL, Param("max_duration_sec", (("max_duration_sec", "DOUBLE"),), 30.0,
                               doc="speech listened to (30 s windows)"),
                  DEVICE, COMPUTE_TYPE, THREADS, ERRORS))
def detect_language(values: pa.Array, model: str = "base", max_duration_sec: float = 30.0, device: str = "auto",
                    compute_type: str = "default", cpu_threads: int = 0, errors: str = "ignore") -> pa.Array:
    """Spoken language (ISO 639-1 code) and its probability, from the speech parts (VAD) of the audio.

    Windows of 30 s are tried in turn (up to ``max_duration_sec``) until one is confident (> 0.5),
    else the majority language wins, as faster-whisper does.

    Example:
        >>> from sparkmm.ops import audio
        >>> detect_language(audio.decode(pa.array([b""])))[0].as_py()["error"]
        'empty: zero-byte input'
    """
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    check_errors_mode(errors)
    if max_duration_sec is None or max_duration_sec <= 0:
        raise ValueError(f"max_duration_sec must be positive, got {max_duration_sec}")
    rows, n = _files(values)
    metas = [m for _, _, m in rows]
    out: list[Any] = [None] * n
    segments = max(1, int(np.ceil(max_duration_sec / CHUNK_SECONDS)))
    wm = None
    for f in prefetch(lambda r: _decode(*r), rows):
        if f.pcm is not None:
            speech = get_speech_timestamps(f.pcm, _vad_options(), sampling_rate=RATE)
            if not speech:
                f.error = _no_speech(f)
        _raise_if(errors, f, metas, "audio detect_language")
        if metas[f.row] is None:
            continue
        if f.error is not None:
            out[f.row] = {"language": None, "probability": None, "error": f.error}
            continue
        if wm is None:
            wm = whisper.load_model(model, whisper.placement(device, cpu_threads), compute_type)
            if not wm.model.is_multilingual:
                raise SparkmmError(f"whisper model {model!r} is English-only: detect_language needs a "
                                   "multilingual model (e.g. 'base')")
        audio = np.concatenate(collect_chunks(f.pcm, speech)[0])[: segments * CHUNK_SECONDS * RATE]
        language, probability, _ = wm.detect_language(audio=audio, language_detection_segments=segments)
        out[f.row] = {"language": language, "probability": round(float(probability), 6), "error": None}
    return pa.array(out, _LANGUAGE)


# ---- transcribe ----------------------------------------------------------------------------------

TRANSCRIBE_PARAMS = (
    MODEL,
    Param("language", (("language", "STRING"),), None,
          doc="ISO 639-1 code; null = detect per file (multilingual models)"),
    Param("task", (("task", "STRING"),), "transcribe", ("transcribe", "translate"), doc="'translate' = to English"),
    Param("beam_size", (("beam_size", "INT"),), 5, doc="beam search width (1 = greedy)"),
    Param("batch_size", (("batch_size", "INT"),), 0,
          doc="30-s chunks per model call, across files; 0 = 16 on GPU, 1 on CPU (faster there)"),
    Param("vad_filter", (("vad_filter", "BOOLEAN"),), True, doc="transcribe only the speech found by Silero VAD"),
    Param("word_timestamps", (("word_timestamps", "BOOLEAN"),), False, doc="add words with times to segments"),
    DEVICE, COMPUTE_TYPE, THREADS, ERRORS,
)


@operator("audio", input_type=_audio.AUDIO_DDL, output_type=TRANSCRIPT_DDL, params=TRANSCRIBE_PARAMS)
def transcribe(values: pa.Array, model: str = "base", language: str | None = None, task: str = "transcribe",
               beam_size: int = 5, batch_size: int = 0, vad_filter: bool = True, word_timestamps: bool = False,
               device: str = "auto", compute_type: str = "default", cpu_threads: int = 0,
               errors: str = "ignore") -> pa.Array:
    """Transcript (text, language, segments with times) by Whisper, batched across the files of a batch.

    Without ``language`` the language of each file is detected first (multilingual models).

    Example:
        >>> from sparkmm.ops import audio
        >>> transcribe(audio.decode(pa.array([b"junk"])), model="tiny.en")[0].as_py()["error"]
        'not_audio: cannot read the data as an audio container'
    """
    check_errors_mode(errors)
    if beam_size is None or beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    rows, n = _files(values)
    metas = [m for _, _, m in rows]
    out: list[Any] = [None] * n
    run = _Transcription(model, language, task, beam_size, batch_size, word_timestamps, device, compute_type,
                         cpu_threads)
    for f in prefetch(lambda r: _chunked(_decode(*r), vad_filter, run), rows):
        _raise_if(errors, f, metas, "audio transcribe")
        if metas[f.row] is None:
            continue
        if f.error is not None:
            out[f.row] = _failed(f.error)
            continue
        run.add(f)
    for f, lang, prob, segments in run.finish():
        text = "".join(s.text for s in segments).strip()
        if not segments:
            f.error = _no_speech(f)
            _raise_if(errors, f, metas, "audio transcribe")
        out[f.row] = {
            "text": text if segments else None, "language": lang, "language_probability": round(float(prob), 6),
            "duration": round(f.duration, 6), "error": f.error,
            "segments": [{"start": s.start, "end": s.end, "text": s.text, "avg_logprob": s.avg_logprob,
                          "no_speech_prob": s.no_speech_prob,
                          "words": None if s.words is None else [
                              {"start": w.start, "end": w.end, "word": w.word, "probability": w.probability}
                              for w in s.words]}
                         for s in segments],
        }
    return pa.array(out, _TRANSCRIPT)


def _failed(error: str) -> dict[str, Any]:
    return {"text": None, "language": None, "language_probability": None, "duration": None, "segments": None,
            "error": error}


def _chunked(f: _File, vad_filter: bool, run: _Transcription) -> _File:
    """Speech chunks of ≤ 30 s and their log-mel features (what the batched pipeline feeds the model)."""
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    if f.pcm is None:
        return f
    limit = CHUNK_SECONDS * RATE
    if vad_filter:
        f.spans = f.clips = get_speech_timestamps(
            f.pcm, _vad_options(min_silence_duration_ms=160, max_speech_duration_s=CHUNK_SECONDS))
    else:
        f.clips = [{"start": s, "end": min(s + limit, len(f.pcm))} for s in range(0, len(f.pcm), limit)]
    if f.clips:
        chunks, f.chunk_meta = collect_chunks(f.pcm, f.clips, max_duration=CHUNK_SECONDS)
        extractor = run.wm.feature_extractor  # the model's own: 80 or 128 mel bins
        f.features = [extractor(c)[..., :-1] for c in chunks]
    f.pcm = None  # features are all the model needs; keep memory to one file's samples at a time
    return f


class _Transcription:
    """Cross-file batching state for one kernel call."""

    def __init__(self, model: str, language: str | None, task: str, beam_size: int, batch_size: int,
                 word_timestamps: bool, device: str, compute_type: str, cpu_threads: int) -> None:
        self.model_name, self.language, self.task = model, language, task
        self.beam_size, self.word_timestamps = beam_size, word_timestamps
        self.where = whisper.placement(device, cpu_threads)
        self.compute_type = compute_type
        self.batch_size = batch_size or (16 if self.where.is_gpu else 1)
        self.files: list[tuple[_File, str, float]] = []
        self.pending: dict[str, list[tuple[int, int]]] = {}  # language -> (file index, chunk index)
        self.outputs: dict[tuple[int, int], list[dict]] = {}
        self._wm = self._pipeline = None
        self._tokenizers: dict[str, Any] = {}
        self._options: dict[str, Any] = {}

    @property
    def wm(self) -> Any:
        """The model (loaded on first use: a batch of only bad rows loads nothing)."""
        if self._wm is None:
            from faster_whisper import BatchedInferencePipeline

            self._wm = whisper.load_model(self.model_name, self.where, self.compute_type)
            self._pipeline = BatchedInferencePipeline(self._wm)
        return self._wm

    def add(self, f: _File) -> None:
        wm = self.wm
        multilingual = wm.model.is_multilingual
        language, probability = self.language, 1.0
        if not f.features:
            language = language or ("en" if not multilingual else None)
        elif language is None:
            if not multilingual:
                language = "en"
            else:  # as BatchedInferencePipeline: detect on the speech features (+ a dummy frame)
                feats = np.concatenate(f.features + [np.full((wm.model.n_mels, 1), -1.5, np.float32)], axis=1)
                language, probability, _ = wm.detect_language(features=feats, language_detection_segments=1,
                                                               language_detection_threshold=0.5)
        elif not multilingual and language != "en":
            language = "en"
        index = len(self.files)
        self.files.append((f, language, probability))
        if not f.features:
            return
        queue = self.pending.setdefault(language, [])
        queue.extend((index, c) for c in range(len(f.features)))
        while len(queue) >= self.batch_size:
            self._run(language, queue[: self.batch_size])
            del queue[: self.batch_size]

    def _setup(self, language: str) -> tuple[Any, Any]:
        if language not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

            tok = Tokenizer(self.wm.hf_tokenizer, self.wm.model.is_multilingual, task=self.task, language=language)
            self._tokenizers[language] = tok
            # The batched pipeline's defaults (faster-whisper 1.x), one temperature, no conditioning.
            self._options[language] = TranscriptionOptions(
                beam_size=self.beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
                no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6,
                compression_ratio_threshold=2.4, temperatures=[0.0], initial_prompt=None, prefix=None,
                suppress_blank=True, suppress_tokens=get_suppressed_tokens(tok, [-1]),
                prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
                max_new_tokens=None, hotwords=None, word_timestamps=self.word_timestamps,
                hallucination_silence_threshold=None, condition_on_previous_text=False, clip_timestamps=None,
                prompt_reset_on_temperature=0.5, multilingual=False, without_timestamps=True,
                max_initial_timestamp=0.0)
        return self._tokenizers[language], self._options[language]

    def _run(self, language: str, items: list[tuple[int, int]]) -> None:
        from faster_whisper.audio import pad_or_trim

        tokenizer, options = self._setup(language)
        features = np.stack([pad_or_trim(self.files[i][0].features[c]) for i, c in items])
        metas = [self.files[i][0].chunk_meta[c] for i, c in items]
        self._pipeline.last_speech_timestamp = 0.0  # word-timing state is per file, not per batch
        for item, result in zip(items, self._pipeline.forward(features, tokenizer, metas, options)):
            self.outputs[item] = result

    def finish(self) -> Iterator[tuple[_File, str | None, float, list[Any]]]:
        """Run what is left, then each file with its language and restored segments."""
        from faster_whisper.transcribe import Segment, Word, restore_speech_timestamps

        for language, queue in self.pending.items():
            if queue:
                self._run(language, queue)
        for index, (f, language, probability) in enumerate(self.files):
            segments = []
            for c in range(len(f.features)):
                for s in self.outputs.pop((index, c)):
                    segments.append(Segment(
                        id=len(segments) + 1, seek=s["seek"], start=round(s["start"], 3), end=round(s["end"], 3),
                        text=s["text"], tokens=s["tokens"], avg_logprob=s["avg_logprob"],
                        compression_ratio=s["compression_ratio"], no_speech_prob=s["no_speech_prob"],
                        words=[Word(**w) for w in s["words"]] if self.word_timestamps else None,
                        temperature=0.0))
            if segments:
                segments = list(restore_speech_timestamps(segments, f.clips, RATE))
            f.features = []
            yield f, language, probability, segments


def word_error_rate(hypothesis: str, reference: str) -> tuple[int, int]:
    """Word edits (substitutions, insertions, deletions) and reference words, case and punctuation ignored.

    Example:
        >>> word_error_rate("The quick round fox.", "the quick brown fox")
        (1, 4)
    """
    import re

    h, r = (re.findall(r"[a-z0-9']+", t.lower()) for t in (hypothesis, reference))
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)], len(r)


__all__ = ["detect_language", "transcribe", "vad_detect", "word_error_rate"]
