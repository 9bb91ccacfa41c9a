"""Targeted sampling: which reviewed and replayed documents go to which split, by hash draws.

Every draw is a hash of (seed, purpose, doc id), so a seed fixes the dataset. The plan, in order:

1. **Frozen holdout**: ``holdout.parquet`` is copied byte for byte from the previous dataset (same
   digest); its document ids are excluded from everything else (the join marks them unusable).
2. **Feedback holdout**: ``feedback_holdout_fraction`` of the reviewed documents per type (the
   first by draw; types with fewer than 3 documents give none), chosen before any sampling among
   documents no earlier dataset trained on, so the gate can score candidate and champion on
   reviewed production documents neither has seen.
3. **Feedback training documents**: every corrected document; confirmed documents, about
   ``confirmed_per_corrected`` per corrected one, spread over types in proportion to what is
   available (``balance_classes``: no type above the median per-type count), documents with a
   weak entity drawn first; then confirmed documents for any entity type with fewer than
   ``min_docs_per_entity`` documents. Without any correction, every confirmed document trains.
4. **Validation**: ``val_fraction`` of the feedback training documents, stratified by (source,
   type), by document id.
5. **Oversampling**: a training document whose correction changed an entity type whose champion
   F1 is below ``weak_entity_f1`` is repeated ``error_oversample`` times (the fractional part by
   draw).
6. **Replay**: documents of the previous ``train.parquet`` (not reviewed now, not in a holdout),
   as many as make replay ``replay_ratio`` of the training rows, with validation taking its
   share. With ``balance_classes`` they top up the types the feedback training documents have
   fewest of first (:func:`top_up`), so a type that the drifted traffic rarely shows is not
   forgotten (measured: ``bench/retrain_strategies`` class_mix); without it they follow the
   previous data's type mix. Then replay documents for entity types still under
   ``min_docs_per_entity``. A validation document of such a type moves to training.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from docloop.config import RetrainConfig
from docloop.datasets.retrain.columns import BoolArray, FloatArray, IntArray
from docloop.documents.examples import RetrainSampling

# purposes of the per-document draws
_HOLDOUT, _CONFIRMED, _VAL, _OVERSAMPLE, _REPLAY, _FLOOR = range(1, 7)
_HASH_CHUNK: Final = 1 << 16


def _splitmix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of each value (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def id_hashes(doc_ids: pa.Array | pa.ChunkedArray, seed: int) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each document id under ``seed`` (vectorised; equal ids, equal hashes).

    The UTF-8 bytes of each id, zero-padded to a multiple of 8, are read as little-endian 64-bit
    words and folded with SplitMix64 together with the length, so the value depends on the id and
    the seed only (not on the machine or the row order).
    """
    array = doc_ids.combine_chunks() if isinstance(doc_ids, pa.ChunkedArray) else doc_ids
    array = array.cast(pa.large_binary())
    count = len(array)
    hashes = np.full(count, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if count == 0:
        return hashes
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[array.offset : array.offset + count + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else None
    if data is None or len(data) == 0:
        data = np.zeros(1, dtype=np.uint8)
    lengths = np.diff(offsets)
    hashes = _splitmix(hashes ^ lengths.astype(np.uint64))
    width = int(lengths[0])
    if width % 8 == 0 and bool((lengths == width).all()):  # e.g. sha256 hex ids: no copy
        words = data[offsets[0] : offsets[-1]].view("<u8").reshape(count, width // 8)
        for word in range(words.shape[1]):
            hashes = _splitmix(hashes ^ words[:, word])
        return hashes
    for begin in range(0, count, _HASH_CHUNK):
        stop = min(count, begin + _HASH_CHUNK)
        length = lengths[begin:stop]
        width = max(8, -(-int(length.max(initial=0)) // 8) * 8)
        column = np.arange(width)
        index = np.minimum(offsets[begin:stop, None] + column, len(data) - 1)
        block = np.where(column < length[:, None], data[index], 0).astype(np.uint8)
        chunk = np.ascontiguousarray(block).view("<u8")
        state = hashes[begin:stop]
        for word in range(chunk.shape[1]):
            state = _splitmix(state ^ chunk[:, word])
        hashes[begin:stop] = state
    return hashes


def draws(hashes: npt.NDArray[np.uint64], purpose: int) -> FloatArray:
    """Uniform numbers in [0, 1), one per hash, independent between purposes."""
    mixed = _splitmix(hashes ^ _splitmix(np.full(1, np.uint64(purpose), dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def allocate(total: int, available: IntArray, balance: bool) -> IntArray:
    """How many of ``total`` to take from each class, given what each class has.

    Proportional to availability (largest remainders, ties to the lower class index), capped at
    what is available. With ``balance``, each class is first capped at the median of the
    non-empty classes' counts, so no class dominates. When the capped classes hold fewer than
    ``total``, all of them are taken.

    Args:
        total: how many to take in all.
        available: per class, how many there are.
        balance: cap classes at the median count.

    Returns:
        Per class, how many to take.
    """
    capacity = available.astype(np.int64).copy()
    if balance and (capacity > 0).any():
        median = math.ceil(float(np.median(capacity[capacity > 0])))
        capacity = np.minimum(capacity, median)
    total = max(0, min(int(total), int(capacity.sum())))
    if total == 0:
        return np.zeros_like(capacity)
    quota = capacity * (total / capacity.sum())
    taken: IntArray = np.minimum(np.floor(quota).astype(np.int64), capacity)
    # the remainders sum to what is left, each below 1: the largest ones get one more
    left = total - int(taken.sum())
    order = np.lexsort((np.arange(len(taken)), -(quota - taken)))
    taken[order[:left]] += 1
    return taken


def top_up(total: int, have: IntArray, available: IntArray) -> IntArray:
    """How many of ``total`` to add to each class so the classes end as even as they can.

    Water-filling: the classes with the fewest (``have``) are filled first, each at most with
    what it has ``available``, up to the highest common level ``total`` reaches; what is left
    below one more full level goes one each to the lowest class indices at that level. Classes
    with nothing available get nothing.

    Args:
        total: how many to add in all.
        have: per class, how many there already are.
        available: per class, how many can be added.

    Returns:
        Per class, how many to add.
    """
    have = have.astype(np.int64)
    available = available.astype(np.int64)
    total = max(0, min(int(total), int(available.sum())))
    if total == 0:
        return np.zeros_like(available)

    def fill(level: int) -> IntArray:
        return np.minimum(available, np.maximum(0, level - have))

    low, high = 0, int((have + available).max())
    while low < high:  # the highest level whose fill fits in total
        middle = (low + high + 1) // 2
        if int(fill(middle).sum()) <= total:
            low = middle
        else:
            high = middle - 1
    taken = fill(low)
    growing = np.flatnonzero((taken < available) & (have + taken <= low))
    taken[growing[: total - int(taken.sum())]] += 1
    return taken


def _take_by_class(
    candidates: IntArray,
    classes: IntArray,
    wanted: IntArray,
    priority: FloatArray,
) -> IntArray:
    """The first ``wanted[c]`` candidates of each class ``c`` in ``priority`` order (< 2)."""
    if len(candidates) == 0:
        return candidates
    key = classes[candidates] * 4.0 + priority[candidates]
    ordered = candidates[np.argsort(key, kind="stable")]
    ordered_classes = classes[ordered]
    starts = np.searchsorted(ordered_classes, ordered_classes, side="left")
    rank = np.arange(len(ordered)) - starts
    return np.sort(ordered[rank < wanted[ordered_classes]])


def _stratified_share(
    candidates: IntArray, strata: IntArray, draw: FloatArray, fraction: float, min_count: int
) -> IntArray:
    """Per stratum, ``max(1, round(n * fraction))`` of its candidates by ``draw``.

    Strata with fewer than ``min_count`` candidates give none, and each stratum keeps at least
    one candidate out of the share.
    """
    if fraction <= 0 or len(candidates) == 0:
        return np.zeros(0, dtype=np.int64)
    counts_all = np.bincount(strata[candidates])
    values = np.flatnonzero(counts_all)
    counts = counts_all[values]
    share = np.where(
        counts >= min_count,
        np.minimum(np.maximum(1, np.rint(counts * fraction)), counts - 1),
        0,
    ).astype(np.int64)
    wanted = np.zeros(int(strata.max()) + 1, dtype=np.int64)
    wanted[values] = share
    return _take_by_class(candidates, strata, wanted, draw)


@dataclass
class RetrainPlan:
    """Which rows go where: indices into the label table (feedback) and the replay table.

    Attributes:
        feedback_train: label rows in training, repeated for oversampling.
        feedback_val: label rows in validation.
        feedback_holdout: label rows in the feedback holdout.
        replay_train: replay rows in training.
        replay_val: replay rows in validation.
        sampling: what the sampling did (for the manifest).
    """

    feedback_train: IntArray
    feedback_val: IntArray
    feedback_holdout: IntArray
    replay_train: IntArray
    replay_val: IntArray
    sampling: RetrainSampling


@dataclass(frozen=True)
class FeedbackColumns:
    """The label table reduced to what sampling needs (numpy, one entry per label row).

    Attributes:
        valid: usable (document found, positions in range, not in the frozen holdout).
        seen: in the previous dataset's train or val split (not a feedback-holdout candidate).
        corrected: the source is ``corrected``.
        classes: type code per row.
        entities: ``(rows, entity types)`` entity counts.
        touched_weak: the correction changed a weak entity type.
        hashes: per-document hash for the draws.
    """

    valid: BoolArray
    seen: BoolArray
    corrected: BoolArray
    classes: IntArray
    entities: npt.NDArray[np.int32]
    touched_weak: BoolArray
    hashes: npt.NDArray[np.uint64]


@dataclass(frozen=True)
class ReplayColumns:
    """The replay pool reduced to what sampling needs (one entry per replay document).

    Attributes:
        classes: type code per document.
        entities: ``(documents, entity types)`` entity counts.
        hashes: per-document hash for the draws.
    """

    classes: IntArray
    entities: npt.NDArray[np.int32]
    hashes: npt.NDArray[np.uint64]


def plan_retrain(
    feedback: FeedbackColumns,
    replay: ReplayColumns,
    config: RetrainConfig,
    *,
    entity_types: Sequence[str],
    val_fraction: float,
    sampling: RetrainSampling,
) -> RetrainPlan:
    """Targeted sampling on columns (see the module docstring for the rules and their order).

    Args:
        feedback: the reviewed documents.
        replay: the replay pool (already free of reviewed documents and holdout documents).
        config: the sampling knobs.
        entity_types: the entity vocabulary (columns of the entity matrices).
        val_fraction: share of validation per (source, type) stratum.
        sampling: the manifest's sampling record (``weak_entities`` set); filled in here.

    Returns:
        The plan.
    """
    return _Planner(feedback, replay, config, entity_types, val_fraction, sampling).run()


class _Planner:
    """The steps of :func:`plan_retrain` over shared boolean masks."""

    def __init__(
        self,
        feedback: FeedbackColumns,
        replay: ReplayColumns,
        config: RetrainConfig,
        entity_types: Sequence[str],
        val_fraction: float,
        sampling: RetrainSampling,
    ) -> None:
        self.fb = feedback
        self.rp = replay
        self.config = config
        self.entity_types = list(entity_types)
        self.val_fraction = val_fraction
        self.sampling = sampling
        self.floor = config.min_docs_per_entity
        self.n_classes = 1 + int(
            max(feedback.classes.max(initial=-1), replay.classes.max(initial=-1))
        )
        self.has_entity = feedback.entities > 0
        self.replay_has = replay.entities > 0
        n, m = len(feedback.valid), len(replay.classes)
        self.holdout = np.zeros(n, dtype=bool)
        self.selected = np.zeros(n, dtype=bool)
        self.in_val = np.zeros(n, dtype=bool)
        self.in_train = np.zeros(n, dtype=bool)
        self.copies = np.ones(n, dtype=np.int64)
        self.replay_in = np.zeros(m, dtype=bool)
        self.replay_in_val = np.zeros(m, dtype=bool)
        self.floor_added: Counter[str] = Counter()
        self.balance_note = (
            " (balance_classes caps each type at the median)" if config.balance_classes else ""
        )

    def run(self) -> RetrainPlan:
        self.feedback_holdout()
        self.feedback_training()
        self.feedback_floor()
        self.validation()
        self.oversampling()
        self.replay()
        below = self.training_floor()
        train_docs = np.flatnonzero(self.in_train)
        replay_train = np.flatnonzero(self.replay_in & ~self.replay_in_val)
        self.sampling.oversampled = int((self.copies[train_docs] > 1).sum())
        self.sampling.replay_rows = len(replay_train)
        self.sampling.floor_added = {k: n for k, n in sorted(self.floor_added.items()) if n}
        self.sampling.below_floor = below
        return RetrainPlan(
            feedback_train=np.repeat(train_docs, self.copies[train_docs]),
            feedback_val=np.flatnonzero(self.in_val),
            feedback_holdout=np.flatnonzero(self.holdout),
            replay_train=replay_train,
            replay_val=np.flatnonzero(self.replay_in_val),
            sampling=self.sampling,
        )

    def feedback_holdout(self) -> None:
        """Step 2: a share of each type's unseen reviewed documents, before any sampling."""
        eligible = np.flatnonzero(self.fb.valid & ~self.fb.seen)
        fraction = self.config.feedback_holdout_fraction
        chosen = _stratified_share(
            eligible, self.fb.classes, draws(self.fb.hashes, _HOLDOUT), fraction, 3
        )
        self.holdout[chosen] = True
        self.pool = self.fb.valid & ~self.holdout

    def feedback_training(self) -> None:
        """Step 3: every corrected document and a class-spread share of confirmed ones."""
        corrected = np.flatnonzero(self.pool & self.fb.corrected)
        confirmed = np.flatnonzero(self.pool & ~self.fb.corrected)
        weak = np.asarray([k in self.sampling.weak_entities for k in self.entity_types], bool)
        has_weak = self.has_entity[:, weak].any(axis=1)
        priority = draws(self.fb.hashes, _CONFIRMED) + np.where(has_weak, 0.0, 1.0)
        if len(corrected):
            budget = round(self.config.confirmed_per_corrected * len(corrected))
        else:
            budget = len(confirmed)
            if budget:
                self.sampling.notes.append(
                    "no corrected document: every confirmed document trains "
                    "(confirmed_per_corrected needs corrections to count from)"
                )
        available = np.bincount(self.fb.classes[confirmed], minlength=self.n_classes)
        wanted = allocate(budget, available, self.config.balance_classes)
        chosen = _take_by_class(confirmed, self.fb.classes, wanted, priority)
        if len(chosen) < budget:
            self.sampling.notes.append(
                f"asked for {budget} confirmed documents "
                f"({self.config.confirmed_per_corrected:g} per corrected), took {len(chosen)}"
                + self.balance_note
            )
        self.selected[corrected] = True
        self.selected[chosen] = True

    def feedback_floor(self) -> None:
        """Step 3b: confirmed documents for entity types under ``min_docs_per_entity``."""
        floor_draw = draws(self.fb.hashes, _FLOOR)
        for t, kind in enumerate(self.entity_types):
            have = int(self.has_entity[self.selected, t].sum())
            if have >= self.floor:
                continue
            spare = np.flatnonzero(self.pool & ~self.selected & self.has_entity[:, t])
            extra = spare[np.argsort(floor_draw[spare], kind="stable")][: self.floor - have]
            self.selected[extra] = True
            self.floor_added[kind] += len(extra)

    def validation(self) -> None:
        """Step 4: validation from the selected documents, by (type, source)."""
        members = np.flatnonzero(self.selected)
        strata = self.fb.classes * 2 + self.fb.corrected.astype(np.int64)
        draw = draws(self.fb.hashes, _VAL)
        self.in_val[_stratified_share(members, strata, draw, self.val_fraction, 3)] = True
        self.in_train = self.selected & ~self.in_val

    def oversampling(self) -> None:
        """Step 5: corrections that changed weak entities count ``error_oversample`` times."""
        boost = self.fb.touched_weak & self.fb.corrected
        whole = math.floor(self.config.error_oversample)
        extra = draws(self.fb.hashes, _OVERSAMPLE) < self.config.error_oversample - whole
        self.copies[boost] = whole + extra[boost].astype(np.int64)

    def replay(self) -> None:
        """Step 6: replay documents, evening out the types, so they make ``replay_ratio``."""
        ratio = self.config.replay_ratio
        feedback_rows = int(self.copies[self.in_train].sum())
        target = round(ratio / (1 - ratio) * feedback_rows)
        with_val = round(target / (1 - self.val_fraction))
        available = np.bincount(self.rp.classes, minlength=self.n_classes)
        if self.config.balance_classes:
            have = np.bincount(self.fb.classes[self.in_train], minlength=self.n_classes)
            wanted = top_up(with_val, have, available)
        else:
            wanted = allocate(with_val, available, False)
        everyone = np.arange(len(self.rp.classes))
        chosen = _take_by_class(everyone, self.rp.classes, wanted, draws(self.rp.hashes, _REPLAY))
        self.replay_in[chosen] = True
        val_draw = draws(self.rp.hashes, _VAL)
        val = _stratified_share(chosen, self.rp.classes, val_draw, self.val_fraction, 3)
        self.replay_in_val[val] = True
        self.sampling.replay_target = target
        if len(chosen) < with_val:
            self.sampling.notes.append(
                f"replay wanted {with_val} documents (train + val) for replay_ratio {ratio:g}; "
                f"the previous training data gave {len(chosen)}"
            )

    def training_floor(self) -> list[str]:
        """Step 6b: lift entity types under the floor in training; return those still under.

        First unused replay documents with the type are added, then validation documents with it
        move to training.
        """
        replay_draw = draws(self.rp.hashes, _FLOOR)
        below: list[str] = []
        for t, kind in enumerate(self.entity_types):
            replay_train = self.replay_in & ~self.replay_in_val
            have = int(self.has_entity[self.in_train, t].sum())
            have += int(self.replay_has[replay_train, t].sum())
            if have < self.floor:
                spare = np.flatnonzero(~self.replay_in & self.replay_has[:, t])
                extra = spare[np.argsort(replay_draw[spare], kind="stable")][: self.floor - have]
                self.replay_in[extra] = True
                self.floor_added[kind] += len(extra)
                have += len(extra)
            if have < self.floor:
                moved = np.flatnonzero(self.in_val & self.has_entity[:, t])[: self.floor - have]
                self.in_val[moved] = False
                self.in_train[moved] = True
                have += len(moved)
            if have < self.floor:
                moved = np.flatnonzero(self.replay_in_val & self.replay_has[:, t])
                moved = moved[: self.floor - have]
                self.replay_in_val[moved] = False
                have += len(moved)
            if have < self.floor:
                below.append(kind)
        if below:
            self.sampling.notes.append(
                f"entity types with fewer than min_docs_per_entity={self.floor} training "
                f"documents even after adding every available one: {', '.join(below)}; collect "
                "feedback on them"
            )
        return below
