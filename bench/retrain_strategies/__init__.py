"""Does the loop really work better? Retraining strategies after drift, on the synthetic corpus.

Run with ``python -m bench.retrain_strategies`` (``make bench-efficacy``; 23 minutes on two CPU
cores at the default size, plus 4.5 minutes the first time to generate and OCR the corpora, which
are cached under ``bench/out/``) or ``--quick`` (two scenarios, one seed, tiny models: a
smoke run of every path in a few minutes, part of ``make bench`` and of the test suite).

One V1 (classifier + extractor) is trained on a ``base`` corpus. After each drift scenario
(``new_template``, ``class_mix``, ``scan_quality``, ``new_vendor``) V1 answers a drifted traffic
corpus; a simulated reviewer judges every answer from the gold labels (5 % of its corrections
deliberately wrong) and the feedback quality rules keep what they accept. From the same V1 and
that same accepted feedback, each strategy makes a candidate of both models:

- ``no_retrain``: V1 itself;
- ``feedback_only``: each model of V1 fine-tuned on its own corrections alone (type corrections
  for the classifier, entity corrections for the extractor: the naive loop);
- ``full_retrain``: a fresh fine-tune of the encoder on all data (V1's training data and every
  accepted reviewed document), V1's recipe (``--epochs``, 4);
- ``targeted``: docloop's retrain dataset with the default policy (``retrain`` section), V1
  warm-started;
- ``replay_<r>``: the same with ``replay_ratio`` swept (0, 0.1, 0.3, 0.5; the default's own
  value is the ``targeted`` row);
- ``random``: V1 fine-tuned on uniformly random rows of the full-retrain data, as many as the
  targeted dataset has.

Each candidate is scored on the **old** holdout (V1's frozen ``base`` holdout) and the **drifted**
holdout (a separate corpus of the scenario, never served, never trained), per class and per
entity, with its training compute (examples seen, wall time) and the gate's verdict (default
policy, frozen + feedback holdouts, against V1), over several seeds (the reviewer's draws, the
sampling and the training seed). It writes ``results.json``, a Markdown table, one PNG per
scenario and ``report.html`` under ``bench/out/retrain_strategies/``, and ``--write-doc`` rewrites
the efficacy section of docs/benchmarks.md from them.

Targets, reported (never asserted): targeted recovers ≥ 95 % of the full-retrain gain on the
drifted holdout, loses ≤ 1 point macro-F1 on the old holdout, at ≤ 35 % of the full retrain's
compute; feedback-only shows measurable forgetting on the old holdout.

Warm-started candidates train for ``--finetune-epochs`` (2; the retrain pipeline's ``epochs``
parameter), the same for all of them. The encoder is all-MiniLM-L6-v2 cut to its first layer
(``--encoder-layers``, default 1 of 6) so that some 170 trainings fit the time on a CPU; the
strategies are compared with each other on the same encoder, which is what the benchmark is
about.
"""
