"""Amharic read speech in Ge'ez script (one device, 1-2 speakers), MIT, github.com/IsraelAbebe/Amharic-ASR-Dataset.

Transcripts carry no punctuation; some have runs of spaces where the original had
punctuation, which the WER normaliser collapses.

Known problem (as shipped): ``raw_text_file.txt`` gives every recording session the same
prompt list by index (``<session>_elicit_N`` has the same text in all 11 sessions), but the
original corpus's per-session ``*_linker.txt`` files show that sessions read different prompt
files (e.g. ``100101-050203`` read ``session11.txt``). Only session ``100102-021202`` (49 clips:
13 train, 5 val, 31 test) has transcripts that fit its audio: transcript length follows clip
duration there (correlation 0.98) and nowhere else (|r| < 0.25). Until the transcripts are
rebuilt from the linker files, WER on this corpus is mostly measured against other sentences.
"""

from __future__ import annotations

from dama.data.recipes._records import RecordsCorpus

CORPUS = RecordsCorpus("amharic", "am", ("train", "val", "test"),
                       "https://github.com/IsraelAbebe/Amharic-ASR-Dataset", "0429362")
download_amharic, prepare_amharic = CORPUS.download, CORPUS.prepare
