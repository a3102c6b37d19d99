"""How long ranking takes per subscriber when a batch of subscribers shares its candidates.

Run from the project root (the reference ranker is in tests/support, which is not installed):

    .venv/bin/python -m bench.ranking_speed --subscribers 1000

Candidates are the sample papers, copied under new ids up to --papers. Each subscriber has 1 to 3
phrases of 1 to 3 consecutive title words and a trending weight, drawn with a fixed seed; a
second round gives the same subscribers --liked liked papers each (drawn from the sample papers,
as a reader's seeds and 👍 are mostly papers of earlier weeks) and times them alike.
Batches of subscribers share one prepare_candidates, then rank_prepared runs per subscriber
(limit 10). For comparison, the first --compare subscribers are ranked by rank_papers (one
subscriber at a time) and by the reference ranker (each paper scored on its own, as rank_papers
did before batches), and must get the same digests. Times are CPU time of this process, as in
the worker's budget.
"""

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from service.models import Interests, Paper, ScoredPaper
from service.ranking import (
    CorpusStats,
    build_corpus_stats,
    prepare_candidates,
    rank_papers,
    rank_prepared,
)
from service.sources.jsonl import read_papers_file
from tests.support.factories import draw_title_phrases, title_phrases
from tests.support.ranking_reference import rank_by_reference

SAMPLE_PAPERS = Path(__file__).resolve().parent.parent / "service" / "sample_data" / "papers.jsonl"
# The day after the newest sample paper, so freshness still tells papers apart.
TODAY = date(2025, 10, 25)
LIMIT = 10
TRENDING_WEIGHTS = (0.0, 0.1, 0.3, 0.5, 0.8, 1.0)
# Bounds: a benchmark, not a load test.
MAX_SUBSCRIBERS = 100_000
MAX_PAPERS = 20_000


@dataclass(frozen=True)
class Reader:
    interests: Interests
    trending_weight: float
    liked: tuple[Paper, ...] = ()


def with_liked_papers(
    readers: Sequence[Reader], papers: Sequence[Paper], count: int, *, seed: int
) -> list[Reader]:
    """The readers, each with `count` liked papers drawn from `papers`."""
    chooser = random.Random(seed)
    liked_readers = []
    for reader in readers:
        liked = tuple(chooser.sample(list(papers), min(count, len(papers))))
        interests = reader.interests.model_copy(
            update={"liked": tuple(paper.id for paper in liked)}
        )
        liked_readers.append(
            Reader(interests=interests, trending_weight=reader.trending_weight, liked=liked)
        )
    return liked_readers


def time_batches(
    readers: Sequence[Reader],
    candidates: Sequence[Paper],
    *,
    stats: CorpusStats,
    batch_size: int,
    keep: int,
) -> tuple[list[float], list[float], list[list[ScoredPaper]]]:
    """CPU seconds of each batch's prepare_candidates and of each reader's rank_prepared, and
    the first `keep` digests."""
    prepare_seconds: list[float] = []
    rank_seconds: list[float] = []
    digests: list[list[ScoredPaper]] = []
    for first in range(0, len(readers), batch_size):
        started = time.process_time()
        prepared = prepare_candidates(candidates, stats=stats, today=TODAY)
        prepare_seconds.append(time.process_time() - started)
        for reader in readers[first : first + batch_size]:
            started = time.process_time()
            ranked = rank_prepared(
                prepared,
                reader.interests,
                trending_weight=reader.trending_weight,
                limit=LIMIT,
                liked=reader.liked,
            )
            rank_seconds.append(time.process_time() - started)
            if len(digests) < keep:
                digests.append(ranked)
    return prepare_seconds, rank_seconds, digests


def make_candidates(papers: Sequence[Paper], count: int) -> list[Paper]:
    """The papers, then copies of them under new ids until there are `count`."""
    candidates = list(papers[:count])
    copy = 0
    while len(candidates) < count:
        copy += 1
        for paper in papers[: count - len(candidates)]:
            candidates.append(paper.model_copy(update={"id": f"{paper.id}-copy{copy}"}))
    return candidates


def draw_readers(papers: Sequence[Paper], count: int, *, seed: int) -> list[Reader]:
    """Readers whose interests are phrases of consecutive words from the papers' titles."""
    chooser = random.Random(seed)
    titles = title_phrases(papers)
    readers = []
    for _ in range(count):
        phrases = draw_title_phrases(chooser, titles)
        readers.append(
            Reader(
                interests=Interests(keywords=tuple(phrases)),
                trending_weight=chooser.choice(TRENDING_WEIGHTS),
            )
        )
    return readers


def milliseconds(seconds: Sequence[float]) -> str:
    values = sorted(1000 * value for value in seconds)
    p95 = (
        statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]
    )
    return f"mean {statistics.fmean(values):.3f} ms, p95 {p95:.3f} ms, max {values[-1]:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=500, help="candidate papers")
    parser.add_argument("--batch", type=int, default=100, help="subscribers per prepared batch")
    parser.add_argument("--compare", type=int, default=100, help="subscribers timed one by one")
    parser.add_argument("--liked", type=int, default=20, help="liked papers per subscriber")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    subscriber_count = max(1, min(args.subscribers, MAX_SUBSCRIBERS))
    paper_count = max(1, min(args.papers, MAX_PAPERS))
    batch_size = max(1, args.batch)

    sample = read_papers_file(SAMPLE_PAPERS).papers
    candidates = make_candidates(sample, paper_count)
    readers = draw_readers(sample, subscriber_count, seed=args.seed)
    # Also analyses every paper once, as the day's corpus statistics do before any ranking.
    stats = build_corpus_stats(candidates)

    prepare_seconds, rank_seconds, batch_digests = time_batches(
        readers, candidates, stats=stats, batch_size=batch_size, keep=args.compare
    )
    single_seconds: list[float] = []
    reference_seconds: list[float] = []
    for reader, batch_ranked in zip(readers, batch_digests, strict=False):
        started = time.process_time()
        ranked = rank_papers(
            candidates,
            reader.interests,
            stats=stats,
            trending_weight=reader.trending_weight,
            limit=LIMIT,
            today=TODAY,
        )
        single_seconds.append(time.process_time() - started)
        started = time.process_time()
        expected = rank_by_reference(
            candidates,
            reader.interests,
            stats=stats,
            trending_weight=reader.trending_weight,
            limit=LIMIT,
            today=TODAY,
        )
        reference_seconds.append(time.process_time() - started)
        if not ranked == batch_ranked == expected:
            raise SystemExit(f"the rankers disagree for {reader}")

    first_batch = min(batch_size, len(rank_seconds))
    amortised = (sum(prepare_seconds) + sum(rank_seconds)) / len(rank_seconds)
    print(
        f"{len(candidates)} candidate papers; {len(readers)} subscribers in"
        f" {len(prepare_seconds)} batches of {batch_size}; limit {LIMIT}; CPU time"
    )
    print(f"prepare_candidates, per batch: first {1000 * prepare_seconds[0]:.2f} ms", end="")
    if len(prepare_seconds) > 1:
        print(f", then {milliseconds(prepare_seconds[1:])}")
    else:
        print()
    print(f"rank_prepared, per subscriber: {milliseconds(rank_seconds)}")
    first_times = milliseconds(rank_seconds[:first_batch])
    print(f"  first batch alone (it indexes and weighs the candidates): {first_times}")
    print(f"prepare + rank, amortised: {1000 * amortised:.3f} ms per subscriber")
    if single_seconds:
        print(f"first {len(single_seconds)} subscribers again, one at a time, same digests:")
        print(f"  rank_papers: {milliseconds(single_seconds)}")
        print(f"  reference, scoring every paper: {milliseconds(reference_seconds)}")
    if args.liked > 0:
        time_liked_readers(readers, sample, candidates, stats=stats, args=args)


def time_liked_readers(
    readers: Sequence[Reader],
    sample: Sequence[Paper],
    candidates: Sequence[Paper],
    *,
    stats: CorpusStats,
    args: argparse.Namespace,
) -> None:
    """The same readers with liked papers: batches timed alike, and the first few checked
    against rank_papers (the reference ranker knows keywords only)."""
    liked_readers = with_liked_papers(readers, sample, args.liked, seed=args.seed)
    batch_size = max(1, args.batch)
    prepare_seconds, rank_seconds, digests = time_batches(
        liked_readers, candidates, stats=stats, batch_size=batch_size, keep=args.compare
    )
    for reader, batch_ranked in zip(liked_readers, digests, strict=False):
        ranked = rank_papers(
            candidates,
            reader.interests,
            stats=stats,
            trending_weight=reader.trending_weight,
            limit=LIMIT,
            today=TODAY,
            liked=reader.liked,
        )
        if ranked != batch_ranked:
            raise SystemExit(f"rank_papers and rank_prepared disagree for {reader}")
    amortised = (sum(prepare_seconds) + sum(rank_seconds)) / len(rank_seconds)
    print(f"the same subscribers with {args.liked} liked papers each:")
    print(f"  rank_prepared, per subscriber: {milliseconds(rank_seconds)}")
    print(
        f"  prepare + rank, amortised in batches of {batch_size}:"
        f" {1000 * amortised:.3f} ms per subscriber"
    )


if __name__ == "__main__":
    main()
