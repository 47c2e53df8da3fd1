"""Malagasy read speech, upper-case transcripts, MIT, github.com/dimbyr/Malagasy_Speech_Data.

The original ships no split. The shared copy takes train and val from recording device
``7f0`` and test from device ``2f0`` (another set-up, likely another voice), so the test
WER measures transfer to an unseen recording condition, unlike the single-speaker
corpora. The device is the third ``_``-field of each id (``200623-203708_mlg_7f0_elicit_1``).
"""

from __future__ import annotations

from dama.data.recipes._records import RecordsCorpus

CORPUS = RecordsCorpus("malagasy", "mg", ("train", "val", "test"),
                       "https://github.com/dimbyr/Malagasy_Speech_Data", "908b241")
download_malagasy, prepare_malagasy = CORPUS.download, CORPUS.prepare

DEVICES = {"train": "7f0", "val": "7f0", "test": "2f0"}  # as shipped; see the module doc


def device_of(utt_id: str) -> str:
    """The recording device of a Lig-Aikuma id: ``DATE-TIME_LANG_DEVICE_elicit_N`` -> ``DEVICE``."""
    return utt_id.split("_")[2]
