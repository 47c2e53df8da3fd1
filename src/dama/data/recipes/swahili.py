"""Swahili read news speech (one speaker), MIT, github.com/CateGitau/Swahili-Speech."""

from __future__ import annotations

from dama.data.recipes._records import RecordsCorpus

CORPUS = RecordsCorpus("swahili", "sw", ("train", "val", "test"),
                       "https://github.com/CateGitau/Swahili-Speech", "3f51a8d")
download_swahili, prepare_swahili = CORPUS.download, CORPUS.prepare
