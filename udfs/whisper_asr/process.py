"""Speech recognition with Whisper (faster-whisper), wrapping sparkmm's audio.transcribe kernel.

args: ``model`` ("base": multilingual; "tiny.en"; a model directory or package), ``language`` (None =
detect), ``beam_size`` (5), ``path_column`` ("path"), ``device`` ("auto").
Process loads the audio by path and transcribes (model loaded once per worker, batched across
files); PostProcess flattens the transcript into columns.
"""

import pandas as pd
import pyarrow as pa

from sparkmm.ops import audio, speech


class Process:
    output_schema = "path string, text string, language string, language_probability double, duration double, error string"
    gpus = 1

    def __init__(self, args):
        self.args = args

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        paths = frame[self.args.get("path_column", "path")].tolist()
        values = audio.load(pa.array(paths, pa.string()), storage_options={"allow_local_files": True})
        out = speech.transcribe(values, model=self.args.get("model", "base"), language=self.args.get("language"),
                                beam_size=int(self.args.get("beam_size", 5)),
                                device=self.args.get("device", "auto")).to_pylist()
        rows = [t or {} for t in out]
        return pd.DataFrame({"path": paths, "text": [r.get("text") for r in rows],
                             "language": [r.get("language") for r in rows],
                             "language_probability": [r.get("language_probability") for r in rows],
                             "duration": [r.get("duration") for r in rows], "error": [r.get("error") for r in rows]})


class PostProcess:
    output_schema = "path string, text string, language string, words int, duration double, error string"

    def __init__(self, args):
        pass

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        words = [None if t is None else len(t.split()) for t in frame["text"]]
        return pd.DataFrame({"path": frame["path"], "text": frame["text"], "language": frame["language"],
                             "words": pd.array(words, "Int32"), "duration": frame["duration"],
                             "error": frame["error"]})
