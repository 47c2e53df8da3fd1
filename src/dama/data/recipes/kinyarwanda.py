"""Kinyarwanda read speech (one device), MIT, github.com/Andrews2017/Speech-Kinyarwanda-dataset.

Whisper has no Kinyarwanda token, so this recipe exercises the new-language path: its
utterances carry the ISO 639-1 code ``rw`` and ``language_name`` names the token that
``dama train`` adds (``--language rw --language-name Kinyarwanda``). Zero-shot decoding
needs an existing token instead. ``zero_shot_proxy`` was chosen on the val split (never
the test split) among three Bantu languages Whisper has: Swahili (``sw``, also the regional
lingua franca), Shona (``sn``) and Lingala (``ln``). Lingala had the lowest val WER
(benchmarks/zero-shot/kinyarwanda_val_*.json), and keeps it when the val hypotheses are
scored against the realigned text (see below: ln 1.07, sn 1.09, sw 1.14). All three are
near-useless zero-shot (WER above 1); the choice matters for a baseline, not for usable
transcripts.

Transcripts are cased and punctuated as shipped. They are stretches of running text that
start and end mid-sentence, as in the original corpus; a few lack the space after a full stop
("zombi.Ibiganiro"), which the WER normaliser splits back into two words.

Known problem (as shipped): the transcripts are offset from the audio by 15 prompts. The
audio of ``elicit_N`` is the text given for ``elicit_{N+15}``: whisper-base's val output best
matches that line for 50 of 60 clips, and transcript length follows clip duration at that
offset (correlation 0.63 overall, 0.5-0.7 in every range of 100 ids) but not as shipped
(-0.01). Scored against the text 15 prompts on, the val CER of every candidate proxy falls
from about 0.82 to about 0.47 (56 of 60 clips have that text). The shipped file lacks the
right text for clips whose ``N+15`` was not shipped, so the fix belongs in the data, not
here; until then WER on this corpus is measured against other sentences, and the proxy
choice above rests on that.
"""

from __future__ import annotations

from dama.data.recipes._records import RecordsCorpus

CORPUS = RecordsCorpus("kinyarwanda", "rw", ("train", "val", "test"),
                       "https://github.com/Andrews2017/Speech-Kinyarwanda-dataset", "a0df7a3",
                       language_name="Kinyarwanda", zero_shot_proxy="ln")  # lowest val WER of sw, sn, ln (see above)
download_kinyarwanda, prepare_kinyarwanda = CORPUS.download, CORPUS.prepare
