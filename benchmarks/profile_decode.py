"""Where greedy decoding from the encoder cache spends its time (the cost behind every bench run).

    DAMA_DATA=../shared/data python benchmarks/profile_decode.py [--data swahili:test] [--batch 16] [--skip 20]

Decodes one batch of test clips (longest first, after skipping ``--skip``) with whisper-base
from cached encoder outputs, as `dama train`/`dama eval --cache-dir` do, and prints the
wall time and a cProfile table sorted by cumulative time.
"""

import argparse
import cProfile
import pstats
import time
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutput

from dama.data.spec import load_data
from dama.encoder_cache import EncoderCache
from dama.models.load import load_whisper
from dama.models.transcribe import DecodeOptions, decode_features, token_budget


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="swahili:test")
    ap.add_argument("--language", default="sw")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--skip", type=int, default=20)
    ap.add_argument("--cache-dir", default=str(Path(__file__).parent / "cpu-whisper-base" / "runs" / ".encoder-cache"),
                    help="encoder cache folder (default: the bench grid's, so a grid already run makes it a hit)")
    args = ap.parse_args()
    w = load_whisper("whisper-base")
    m = load_data(args.data)
    m.fill_durations()
    rows = sorted(range(len(m)), key=lambda r: -(m[r].duration or 0))
    rows = [r for r in rows if m[r].duration <= 30][args.skip:args.skip + args.batch]
    cache = EncoderCache.build(w, m, args.cache_dir)  # the whole split, as the grid caches it
    enc = BaseModelOutput(last_hidden_state=cache.get(rows).float())
    opts = DecodeOptions()
    prompts = [w.prompt_ids(args.language) for _ in rows]
    budgets = [token_budget(m[r].duration, opts) for r in rows]
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    toks = decode_features(w, None, prompts, budgets, opts, encoder_outputs=enc)
    prof.disable()
    wall = time.perf_counter() - t
    print(f"{len(rows)} clips, {max(len(x) for x in toks)} steps at most, {wall:.1f} s "
          f"({wall / len(rows):.2f} s per clip), {torch.get_num_threads()} threads")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
