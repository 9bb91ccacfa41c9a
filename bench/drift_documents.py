"""Power and false alarms of the embedding-drift test on synthetic documents (not arrays).

Run with ``python -m bench.drift_documents [--pool 200] [--replicas 100]``. Documents of the
``base``, ``new_template`` and ``new_vendor`` scenarios are laid out by the synthetic generator
(words in reading order, no PDF rendering or OCR: the text-layer words preprocess would read),
embedded once with the packaged all-MiniLM-L6-v2 the way ``monitor.embeddings`` pools a document
(mean of the last hidden states over its first ``--max-length`` tokens), and replicas are drawn
from these pools at the demo's traffic size (reference 105 training documents, current 72 served
ones): no-drift replicas draw both sides from ``base``; drifted ones draw the current side from a
scenario. Each replica runs ``monitor.drift.embedding_shift`` at the check's alpha. Replicas
resample a finite pool, so they understate the variance between real windows somewhat.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from docloop.config import DriftConfig
from docloop.documents.synth.corpus import SCENARIO_SPECS, _assign, _rng
from docloop.documents.synth.doctypes import build_content
from docloop.documents.synth.templates import lay_out
from docloop.documents.synth.vocab import Values, base_formats, new_vendor_formats
from docloop.models.encoder import load_encoder, load_tokenizer, resolve_encoder
from docloop.monitor.drift import embedding_shift

OUT = Path(__file__).resolve().parent / "out"
_STREAM_CONTENT = 0


def words_of(index: int, seed: int, scenario: str) -> list[str]:
    spec = SCENARIO_SPECS[scenario]
    doc_type, template = _assign(index, seed, spec)
    rng = _rng(seed, scenario, _STREAM_CONTENT, index)
    formats = new_vendor_formats(rng) if spec.vendor_formats else base_formats(rng)
    content, long = build_content(doc_type, rng, Values(rng, formats))
    lay = lay_out(template, content, rng, pages=2 if long else 1)
    placed = sorted(lay.words, key=lambda w: (w.page, round(w.y0), w.x0))
    return [w.text for w in placed]


@torch.inference_mode()
def embed(documents: list[list[str]], max_length: int) -> np.ndarray:
    path = resolve_encoder(None)
    tokenizer, encoder = load_tokenizer(path), load_encoder(path).eval()
    rows = []
    for start in range(0, len(documents), 32):
        chunk = [d or [""] for d in documents[start : start + 32]]
        enc = tokenizer(
            chunk,
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        states = encoder(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
        ).last_hidden_state
        weights = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
        rows.append(((states * weights).sum(1) / weights.sum(1)).numpy())
    return np.concatenate(rows).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=200, help="documents per scenario")
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--reference", type=int, default=105)
    parser.add_argument("--current", type=int, default=72)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--permutations", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    pools = {}
    for scenario in ("base", "new_template", "new_vendor"):
        size = args.pool * (2 if scenario == "base" else 1)
        docs = [words_of(i, 7, scenario) for i in range(size)]
        pools[scenario] = embed(docs, args.max_length)
    embedded_s = time.perf_counter() - started
    alpha = DriftConfig().alpha / 3  # the check's Bonferroni share per test family
    rng = np.random.default_rng(0)
    figures = {"embedded_s": round(embedded_s, 1), "alpha": alpha, **vars(args)}
    for case in ("no_drift", "new_template", "new_vendor"):
        hits = 0
        for r in range(args.replicas):
            base = pools["base"]
            order = rng.permutation(len(base))
            reference = base[order[: args.reference]]
            if case == "no_drift":
                current = base[order[args.reference : args.reference + args.current]]
            else:
                pick = rng.choice(len(pools[case]), args.current, replace=False)
                current = pools[case][pick]
            test = embedding_shift(
                reference,
                current,
                alpha=alpha,
                permutations=args.permutations,
                max_rows=2000,
                seed=r,
            )
            hits += int(test.drift)
        figures[case] = hits / args.replicas
        print(case, hits, "/", args.replicas, flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "drift_documents.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
