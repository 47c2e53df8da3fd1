"""Yoruba read speech with tone marks (one speaker), MIT, github.com/ogunlao/yoruba_speech_project."""

from __future__ import annotations

from dama.data.recipes._records import RecordsCorpus

CORPUS = RecordsCorpus("yoruba", "yo", ("train", "val", "test", "extra"),
                       "https://github.com/ogunlao/yoruba_speech_project", "7000026")
download_yoruba, prepare_yoruba = CORPUS.download, CORPUS.prepare
