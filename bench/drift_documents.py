"""Power and false alarms of the drift check's document tests on documents (not arrays).

Run with ``python -m bench.drift_documents [--pool 150] [--replicas 100] [--receipts DIR]``.

Documents of the ``base``, ``new_template`` and ``new_vendor`` scenarios are the words their
text layer holds (``documents.synth.corpus.text_layer_example``: laid out by the synthetic
generator, no PDF rendering or OCR); ``--receipts`` points at preprocess output (page records)
of real receipts (SROIE), a kind of document the synthetic-trained loop never saw. Every
document is embedded once with the packaged all-MiniLM-L6-v2 the way ``monitor.embeddings``
pools a document (mean of the last hidden states over its first ``--max-length`` tokens).

Replicas are drawn at the demo's traffic size (reference ``--reference`` 105 training
documents, current ``--current`` 72 served ones). No-drift replicas draw both sides from
``base`` (disjoint documents); drifted ones draw the current side from a scenario; ``demo_mix``
is the demo's round-1 traffic (half ``new_template``, half ``new_vendor``). Each replica runs
the two document tests of ``monitor.drift`` at the check's per-test level ``alpha / --tests``
(Bonferroni over the six tests the check can run): the embedding MMD (``embedding_shift``) and
the layout/format test on document profiles (``monitor.profiles`` + ``profile_shift``), and
reports each test's detection rate and that of "either", the check's decision on these two.
Replicas resample a finite pool, so they understate the variance between real windows somewhat.

Prints a table and writes ``bench/out/drift_documents.json``. Targets (reported, never
asserted): false alarms <= 5 % over >= 100 no-drift replicas; every drift scenario detected.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from docloop.config import DriftConfig
from docloop.documents.examples import DocumentExample, build_examples
from docloop.documents.preprocess import read_page_records
from docloop.documents.synth.corpus import text_layer_example
from docloop.models.encoder import load_encoder, load_tokenizer, resolve_encoder
from docloop.monitor.drift import embedding_shift, profile_shift
from docloop.monitor.profiles import document_profiles
from docloop.storage import Storage

OUT = Path(__file__).resolve().parent / "out"
SEED = 7


@torch.inference_mode()
def embed(documents: list[DocumentExample], max_length: int) -> np.ndarray:
    path = resolve_encoder(None)
    tokenizer, encoder = load_tokenizer(path), load_encoder(path).eval()
    rows = []
    for start in range(0, len(documents), 32):
        chunk = [d.words or [""] for d in documents[start : start + 32]]
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


def receipts(folder: str, limit: int) -> list[DocumentExample]:
    """Up to ``limit`` documents of preprocess output under ``folder`` (sorted by id)."""
    examples = build_examples(read_page_records(Storage(), folder), {})
    return examples[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=150, help="documents per drift scenario")
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--reference", type=int, default=105)
    parser.add_argument("--current", type=int, default=72)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--tests", type=int, default=6, help="Bonferroni family size")
    parser.add_argument(
        "--receipts", default=None, help="preprocess output of real receipts (a 'receipts' case)"
    )
    parser.add_argument(
        "--cases", nargs="+", default=None, help="only these cases (default: all available)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = DriftConfig()
    started = time.perf_counter()
    documents = {
        scenario: [
            text_layer_example(i, SEED, scenario)
            for i in range(args.pool * (2 if scenario == "base" else 1))
        ]
        for scenario in ("base", "new_template", "new_vendor")
    }
    if args.receipts:
        documents["receipts"] = receipts(args.receipts, args.pool)
    vectors = {name: embed(docs, args.max_length) for name, docs in documents.items()}
    prepared_s = time.perf_counter() - started
    alpha = config.alpha / args.tests
    rng = np.random.default_rng(0)
    figures: dict[str, object] = {
        "prepared_s": round(prepared_s, 1),
        "alpha_per_test": alpha,
        **vars(args),
        "pool_sizes": {name: len(docs) for name, docs in documents.items()},
    }
    cases = ["no_drift", "new_template", "new_vendor", "demo_mix"]
    if "receipts" in documents:
        cases.append("receipts")
    if args.cases:
        cases = [case for case in cases if case in args.cases]
    rows = {}
    for case in cases:
        hits = {"embedding_mmd": 0, "layout_format": 0, "either": 0}
        case_started = time.perf_counter()
        for r in range(args.replicas):
            order = rng.permutation(len(documents["base"]))
            ref_index = order[: args.reference]
            if case == "no_drift":
                picks = [("base", order[args.reference : args.reference + args.current])]
            elif case == "demo_mix":
                half = args.current // 2
                picks = [
                    (s, rng.choice(len(documents[s]), n, replace=False))
                    for s, n in (("new_template", half), ("new_vendor", args.current - half))
                ]
            else:
                picks = [(case, rng.choice(len(documents[case]), args.current, replace=False))]
            current_docs = [documents[s][int(i)] for s, idx in picks for i in idx]
            current_vectors = np.concatenate([vectors[s][idx] for s, idx in picks])
            reference_docs = [documents["base"][int(i)] for i in ref_index]
            embedding = embedding_shift(
                vectors["base"][ref_index],
                current_vectors,
                alpha=alpha,
                permutations=args.permutations,
                max_rows=config.max_embedding_rows,
                seed=r,
            )
            profiles = document_profiles(
                reference_docs,
                current_docs,
                min_documents=config.profile_min_documents,
                max_vocabulary=config.profile_max_features,
            )
            profile = profile_shift(
                profiles.reference,
                profiles.current,
                profiles.names,
                alpha=alpha,
                permutations=args.permutations,
                seed=r,
            )
            hits["embedding_mmd"] += int(embedding.drift)
            hits["layout_format"] += int(profile.drift)
            hits["either"] += int(embedding.drift or profile.drift)
            if r == 0:
                figures[f"{case}_example_reason"] = profile.reason
        rows[case] = {name: count / args.replicas for name, count in hits.items()}
        rows[case]["seconds"] = round(time.perf_counter() - case_started, 1)
        print(case, rows[case], flush=True)
    figures["rates"] = rows
    OUT.mkdir(exist_ok=True)
    (OUT / "drift_documents.json").write_text(json.dumps(figures, indent=2))
    print(f"\nper-test alpha {alpha:.3g}; {args.replicas} replicas per case; rate = share flagged")
    print(f"{'case':<14}{'embedding MMD':>15}{'layout/format':>15}{'either':>10}")
    for case, rate in rows.items():
        print(
            f"{case:<14}{rate['embedding_mmd']:>15.2f}{rate['layout_format']:>15.2f}"
            f"{rate['either']:>10.2f}"
        )
    if "no_drift" in rows:
        print(f"\nfalse-alarm rate (no_drift, either): {rows['no_drift']['either']:.2f}")


if __name__ == "__main__":
    main()
