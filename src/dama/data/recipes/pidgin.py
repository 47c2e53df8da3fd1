"""Nigerian Pidgin read speech (one device), MIT, github.com/BlessingBassey/AMMI-Speech-Lig-Aikuma.

Whisper has no Nigerian Pidgin token, so this recipe exercises the new-language path:
its utterances carry the ISO 639-3 code ``pcm`` (there is no 639-1 code) and
``language_name`` names the token ``dama train`` adds. For zero-shot decoding the proxy
is English (``zero_shot_proxy``): Pidgin is an English-based creole whose spelling here
is mostly English words ("This good news dey inside Bible"), so the English token gets
the script, vocabulary and spelling conventions closest.
"""

from __future__ import annotations

from dama.data.recipes._records import RecordsCorpus

CORPUS = RecordsCorpus("pidgin", "pcm", ("train", "val", "test"),
                       "https://github.com/BlessingBassey/AMMI-Speech-Lig-Aikuma", "db596b4",
                       language_name="Nigerian Pidgin", zero_shot_proxy="en")
download_pidgin, prepare_pidgin = CORPUS.download, CORPUS.prepare
