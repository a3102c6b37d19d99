"""Offline evaluation of service.ranking against graded relevance judgements.

Run from the project root:

    .venv/bin/python -m bench.ranking_eval \\
        --papers service/sample_data/papers.jsonl \\
        --profiles bench/data/dev-profiles.json --qrels bench/data/dev-qrels.jsonl

(those paths are the defaults). Every profile ranks the whole corpus with trending weight 0.
nDCG@10 uses linear gains (the judged grade) and a log2 discount, the ideal ranking built from
all judged papers; P@5 and Recall@20 count grade >= 1 as relevant; unjudged papers count as 0.
"ranker" is rank_papers as the digest calls it (MIN_RELEVANCE applies, so a list can be short);
"ranker, no threshold" sorts every paper by the same relevance; "plain BM25" is the baseline:
one bag of query words, one title+abstract field, no phrases.

Figures printed on the 10 dev profiles and the 375 sample papers (ms vary with the machine):

    profile                   nDCG@10   P@5   R@20 | plain BM25: nDCG@10   P@5   R@20
    gnn_recsys                  0.963  1.00  0.760 |               0.884  1.00  0.600
    continual_learning          1.000  1.00  0.917 |               1.000  1.00  0.917
    diffusion_models            0.933  1.00  0.941 |               0.932  1.00  0.882
    hard_trial_and_error        0.814  1.00  0.346 |               0.776  1.00  0.288
    d_mixture_of_experts        0.856  1.00  0.500 |               0.931  1.00  0.500
    d_multi_task_learning       0.870  1.00  0.706 |               0.621  0.60  0.353
    d_hetero_dynamic_graphs     0.899  1.00  0.750 |               0.795  1.00  0.688
    d_hard_finding_objects      0.800  1.00  0.647 |               0.095  0.20  0.176
    d_hard_science              0.518  0.80  0.389 |               0.357  0.60  0.278
    d_narrow_uncertainty        0.833  0.80  0.778 |               0.839  0.80  0.778
    mean                        0.849  0.96  0.673 |               0.723  0.82  0.546

The seeds mode then likes each profile's two judged-relevant (grade 2) papers of smallest id and
prints residual nDCG@10 (the seeds left out of ranking and judgements) for keywords only,
keywords + seeds and seeds only; then one round of simulated feedback on the first 10 that
keywords + seeds shows (grade 2: liked; judged grade 0: disliked; a paper nobody judged gets no
verdict) and residual nDCG@10 of the rest before and after it (the 10 shown left out too):

    profile                  keywords kw+seeds   seeds | liked disliked  before   after
    gnn_recsys                  0.954    0.954   0.653 |     6        0   0.727   0.731
    continual_learning          0.928    0.928   0.922 |     7        2   0.387   0.387
    diffusion_models            0.929    0.929   0.931 |     8        0   0.947   0.977
    hard_trial_and_error        0.814    0.809   0.491 |     6        0   0.548   0.541
    d_mixture_of_experts        0.751    0.873   0.842 |     6        3   0.000   0.091
    d_multi_task_learning       0.853    0.928   0.401 |     8        1   0.409   0.465
    d_hetero_dynamic_graphs     0.880    0.878   0.411 |     7        2   0.354   0.512
    d_hard_finding_objects      0.856    0.868   0.411 |     7        2   0.312   0.383
    d_hard_science              0.445    0.506   0.110 |     3        5   0.133   0.150
    d_narrow_uncertainty        0.768    0.768   0.619 |     2        6   0.469   0.765
    mean                        0.818    0.844   0.579 |                  0.429   0.500

For reference, a TF-IDF centroid of the two seeds scores 0.601 seeds only, 0.714 keywords only
and 0.744 keywords + seeds. Where two seeds share little vocabulary with the rest of their topic
(the lay-worded profiles, or seeds on two sides of it: heterogeneous and dynamic graphs) word
matching finds their own neighbours, not the topic: bench.seed_similarity tries other ways.

"ranker" and "ranker, no threshold" agree here: the threshold keeps 15 to 275 papers per
profile. Scoring every paper takes 2-25 ms per profile once the corpus is analysed (about
0.3 s, cold); a digest (limit 10) takes about 2 ms through rank_papers and 1.5 ms from
prepared candidates, as a batch of subscribers ranks. The profiles in a reader's lay words
("hard_*", e.g. "agents that learn from trial and error" for reinforcement learning) are where
word matching alone fails (plain BM25: 0.776, 0.095, 0.357); the thesaurus maps their words to
the field's (see thesaurus.py).
"""

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from service.models import DEFAULT_TRENDING_WEIGHT, Interests, Paper
from service.ranking import (
    CorpusStats,
    build_corpus_stats,
    prepare_candidates,
    rank_papers,
    rank_prepared,
    relevance_scores,
)
from service.ranking.relevance import K1, B
from service.ranking.terms import analyse_interests, analyse_paper
from service.sources.jsonl import read_papers_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PAPERS = PROJECT_ROOT / "service" / "sample_data" / "papers.jsonl"
DEFAULT_PROFILES = PROJECT_ROOT / "bench" / "data" / "dev-profiles.json"
DEFAULT_QRELS = PROJECT_ROOT / "bench" / "data" / "dev-qrels.jsonl"

# Trending is switched off, so the date only has to be fixed for the run to be repeatable.
EVALUATION_DATE = date(2025, 1, 1)

Ranker = Callable[[Sequence[Paper], Interests, CorpusStats], list[str]]


@dataclass(frozen=True)
class ProfileResult:
    profile_id: str
    ndcg_at_10: float
    precision_at_5: float
    recall_at_20: float
    returned: int
    seconds: float


def load_profiles(path: Path) -> dict[str, Interests]:
    profiles = json.loads(path.read_text(encoding="utf-8"))
    return {
        profile["id"]: Interests.model_validate(
            {"keywords": profile["keywords"], "text": profile.get("text", "")}
        )
        for profile in profiles
    }


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Grades by profile id, then paper id."""
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            judgement = json.loads(line)
            qrels.setdefault(judgement["profile"], {})[judgement["paper"]] = judgement["rel"]
    return qrels


def ndcg_at(k: int, ranking: Sequence[str], grades: Mapping[str, int]) -> float:
    ideal = sorted(grades.values(), reverse=True)
    ideal_dcg = _dcg(ideal[:k])
    if ideal_dcg == 0:
        return 0.0
    return _dcg([grades.get(paper_id, 0) for paper_id in ranking[:k]]) / ideal_dcg


def _dcg(gains: Sequence[int]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def precision_at(k: int, ranking: Sequence[str], grades: Mapping[str, int]) -> float:
    return sum(1 for paper_id in ranking[:k] if grades.get(paper_id, 0) >= 1) / k


def recall_at(k: int, ranking: Sequence[str], grades: Mapping[str, int]) -> float:
    relevant = {paper_id for paper_id, grade in grades.items() if grade >= 1}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def rank_as_digest(papers: Sequence[Paper], interests: Interests, stats: CorpusStats) -> list[str]:
    ranked = rank_papers(
        papers,
        interests,
        stats=stats,
        trending_weight=0.0,
        limit=len(papers),
        today=EVALUATION_DATE,
    )
    return [scored.paper.id for scored in ranked]


def rank_without_threshold(
    papers: Sequence[Paper], interests: Interests, stats: CorpusStats
) -> list[str]:
    scores = relevance_scores(papers, interests, stats=stats)
    return sorted(scores, key=lambda paper_id: (-scores[paper_id], paper_id))


def rank_plain_bm25(papers: Sequence[Paper], interests: Interests, stats: CorpusStats) -> list[str]:
    """Classic BM25: every query word once, title and abstract as one field, no phrases."""
    # The reader's own words only: no thesaurus headings, which are the ranker's own.
    query = {
        stem for clause in analyse_interests(interests) if not clause.via for stem in clause.stems
    }
    avg_length = stats.avg_title_length + stats.avg_abstract_length
    scores: dict[str, float] = {}
    for paper in papers:
        terms = analyse_paper(paper)
        length = terms.title.length + terms.abstract.length
        norm = K1 * (1.0 - B + B * length / avg_length)
        score = 0.0
        for stem in query:
            frequency = terms.title.count(stem) + terms.abstract.count(stem)
            score += stats.idf(stem) * frequency * (K1 + 1.0) / (frequency + norm)
        scores[paper.id] = score
    return sorted(scores, key=lambda paper_id: (-scores[paper_id], paper_id))


def evaluate(
    ranker: Ranker,
    papers: Sequence[Paper],
    profiles: Mapping[str, Interests],
    qrels: Mapping[str, Mapping[str, int]],
    stats: CorpusStats,
) -> list[ProfileResult]:
    results = []
    for profile_id, interests in profiles.items():
        started = time.perf_counter()
        ranking = ranker(papers, interests, stats)
        seconds = time.perf_counter() - started
        grades = qrels.get(profile_id, {})
        results.append(
            ProfileResult(
                profile_id=profile_id,
                ndcg_at_10=ndcg_at(10, ranking, grades),
                precision_at_5=precision_at(5, ranking, grades),
                recall_at_20=recall_at(20, ranking, grades),
                returned=len(ranking),
                seconds=seconds,
            )
        )
    return results


def print_results(name: str, results: Sequence[ProfileResult]) -> None:
    print(f"{name}")
    print(f"  {'profile':<24} {'nDCG@10':>8} {'P@5':>6} {'R@20':>6} {'papers':>7} {'ms':>7}")
    for result in results:
        print(
            f"  {result.profile_id:<24} {result.ndcg_at_10:>8.3f} {result.precision_at_5:>6.2f}"
            f" {result.recall_at_20:>6.3f} {result.returned:>7} {result.seconds * 1000:>7.1f}"
        )
    count = len(results)
    print(
        f"  {'mean':<24} {sum(r.ndcg_at_10 for r in results) / count:>8.3f}"
        f" {sum(r.precision_at_5 for r in results) / count:>6.2f}"
        f" {sum(r.recall_at_20 for r in results) / count:>6.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--papers", type=Path, default=DEFAULT_PAPERS)
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES)
    parser.add_argument("--qrels", type=Path, default=DEFAULT_QRELS)
    arguments = parser.parse_args()

    papers_file = read_papers_file(arguments.papers)
    if papers_file.rejected:
        print(f"skipped {len(papers_file.rejected)} invalid lines of {arguments.papers}")
    papers = papers_file.papers
    profiles = load_profiles(arguments.profiles)
    qrels = load_qrels(arguments.qrels)

    started = time.perf_counter()
    stats = build_corpus_stats(papers)
    analysis_ms = (time.perf_counter() - started) * 1000
    print(f"{len(papers)} papers, {len(profiles)} profiles")
    print(f"corpus statistics (tokenising and stemming every paper, cold): {analysis_ms:.0f} ms")
    print("rank times below reuse the cached analysis, as a batch of subscribers does\n")

    rankers: list[tuple[str, Ranker]] = [
        ("ranker (rank_papers, trending weight 0)", rank_as_digest),
        ("ranker, no threshold", rank_without_threshold),
        ("plain BM25 baseline", rank_plain_bm25),
    ]
    for name, ranker in rankers:
        print_results(name, evaluate(ranker, papers, profiles, qrels, stats))
        print()
    print_seed_results(evaluate_seeds(papers, profiles, qrels, stats))
    print()
    print_default_mix_top(papers, profiles, qrels, stats)
    print()
    digest_ms = time_digest(papers, profiles, stats)
    print(f"a digest (rank_papers, limit 10, trending weight 0.3): {digest_ms:.1f} ms per profile")
    prepared_ms = time_prepared_digest(papers, profiles, stats)
    print(f"a digest from prepared candidates (rank_prepared): {prepared_ms:.1f} ms per profile")


TOP_SHOWN = 5


def print_default_mix_top(
    papers: Sequence[Paper],
    profiles: Mapping[str, Interests],
    qrels: Mapping[str, Mapping[str, int]],
    stats: CorpusStats,
) -> None:
    """Whether trending, at the default mix, pushes an off-topic paper into a top 5: the
    grades of each profile's first five papers (0: judged irrelevant; -: not judged; *: not
    in the top 5 by relevance alone, so brought in by trending)."""
    print(f"top {TOP_SHOWN} at the default mix (trending weight {DEFAULT_TRENDING_WEIGHT})")
    irrelevant = pushed_in = 0
    for profile_id, interests in profiles.items():
        by_relevance, ranked = (
            rank_papers(
                papers,
                interests,
                stats=stats,
                trending_weight=weight,
                limit=TOP_SHOWN,
                today=EVALUATION_DATE,
            )
            for weight in (0.0, DEFAULT_TRENDING_WEIGHT)
        )
        relevant_top = {scored.paper.id for scored in by_relevance}
        grades = qrels.get(profile_id, {})
        shown = []
        for scored in ranked:
            grade = grades.get(scored.paper.id)
            brought = scored.paper.id not in relevant_top
            irrelevant += grade == 0
            pushed_in += grade == 0 and brought
            shown.append(("-" if grade is None else str(grade)) + ("*" if brought else " "))
        print(f"  {profile_id:<24} {' '.join(shown)}")
    print(f"  judged-irrelevant papers in the top {TOP_SHOWN}s: {irrelevant}")
    print(
        f"  of them brought in by trending (not in the top {TOP_SHOWN} by relevance): {pushed_in}"
    )


@dataclass(frozen=True)
class SeedResult:
    """Residual nDCG@10 of one profile: its two seeds left out of ranking and judgements."""

    profile_id: str
    keywords_only: float
    keywords_and_seeds: float
    seeds_only: float
    # One round of verdicts on the first 10 shown of "keywords + seeds": residual nDCG@10 of
    # the rest of that ranking, then of the ranking the verdicts give, the 10 shown left out of
    # both; and whether anything judged relevant was left to find.
    before_feedback: float
    after_feedback: float
    likes: int
    dislikes: int
    left_to_find: bool


SEEDS_PER_PROFILE = 2
SHOWN = 10


def pick_seeds(grades: Mapping[str, int]) -> list[str]:
    """The profile's judged-relevant (grade 2) papers with the smallest ids."""
    return sorted(paper_id for paper_id, grade in grades.items() if grade == 2)[:SEEDS_PER_PROFILE]


def rank_with_votes(
    papers: Sequence[Paper],
    interests: Interests,
    stats: CorpusStats,
    *,
    liked: Sequence[str],
    disliked: Sequence[str] = (),
) -> list[str]:
    """rank_papers as a digest calls it (trending weight 0), with papers liked and disliked."""
    by_id = {paper.id: paper for paper in papers}
    voted = interests.model_copy(update={"liked": tuple(liked), "disliked": tuple(disliked)})
    ranked = rank_papers(
        papers,
        voted,
        stats=stats,
        trending_weight=0.0,
        limit=len(papers),
        today=EVALUATION_DATE,
        liked=[by_id[paper_id] for paper_id in liked],
        disliked=[by_id[paper_id] for paper_id in disliked],
    )
    return [scored.paper.id for scored in ranked]


def residual_ndcg(ranking: Sequence[str], grades: Mapping[str, int], left_out: set[str]) -> float:
    """nDCG@10 with `left_out` removed from the ranking and from the judgements."""
    kept = {paper_id: grade for paper_id, grade in grades.items() if paper_id not in left_out}
    return ndcg_at(10, [paper_id for paper_id in ranking if paper_id not in left_out], kept)


def evaluate_seeds(
    papers: Sequence[Paper],
    profiles: Mapping[str, Interests],
    qrels: Mapping[str, Mapping[str, int]],
    stats: CorpusStats,
) -> list[SeedResult]:
    """Each profile ranked with its seeds liked: keywords only, keywords and seeds, seeds
    only; then one round of verdicts on the first 10 shown of keywords and seeds (grade 2: a
    like, judged grade 0: a dislike; a paper nobody judged gets no verdict, as a reader who
    has not read it gives none)."""
    results = []
    for profile_id, interests in profiles.items():
        grades = qrels.get(profile_id, {})
        seeds = pick_seeds(grades)
        left_out = set(seeds)
        keywords = rank_with_votes(papers, interests, stats, liked=[])
        both = rank_with_votes(papers, interests, stats, liked=seeds)
        seeds_only = rank_with_votes(papers, Interests(), stats, liked=seeds)
        shown = [paper_id for paper_id in both if paper_id not in left_out][:SHOWN]
        likes = [paper_id for paper_id in shown if grades.get(paper_id, 0) == 2]
        dislikes = [paper_id for paper_id in shown if grades.get(paper_id) == 0]
        after = rank_with_votes(papers, interests, stats, liked=[*seeds, *likes], disliked=dislikes)
        seen = left_out | set(shown)
        results.append(
            SeedResult(
                profile_id=profile_id,
                keywords_only=residual_ndcg(keywords, grades, left_out),
                keywords_and_seeds=residual_ndcg(both, grades, left_out),
                seeds_only=residual_ndcg(seeds_only, grades, left_out),
                before_feedback=residual_ndcg(both, grades, seen),
                after_feedback=residual_ndcg(after, grades, seen),
                likes=len(likes),
                dislikes=len(dislikes),
                left_to_find=any(
                    grade > 0 for paper_id, grade in grades.items() if paper_id not in seen
                ),
            )
        )
    return results


def print_seed_results(results: Sequence[SeedResult]) -> None:
    print(
        "seeds: each profile's two grade-2 papers of smallest id liked; residual nDCG@10"
        " (seeds left out)"
    )
    print(
        f"  {'profile':<24} {'keywords':>8} {'kw+seeds':>8} {'seeds':>7} |"
        f" {'liked':>5} {'disliked':>8} {'before':>7} {'after':>7}"
    )
    for result in results:
        marker = "" if result.left_to_find else "  (nothing left)"
        print(
            f"  {result.profile_id:<24} {result.keywords_only:>8.3f}"
            f" {result.keywords_and_seeds:>8.3f} {result.seeds_only:>7.3f} |"
            f" {result.likes:>5} {result.dislikes:>8} {result.before_feedback:>7.3f}"
            f" {result.after_feedback:>7.3f}{marker}"
        )
    count = len(results)
    print(
        f"  {'mean':<24} {sum(r.keywords_only for r in results) / count:>8.3f}"
        f" {sum(r.keywords_and_seeds for r in results) / count:>8.3f}"
        f" {sum(r.seeds_only for r in results) / count:>7.3f} |"
        f" {'':>5} {'':>8} {sum(r.before_feedback for r in results) / count:>7.3f}"
        f" {sum(r.after_feedback for r in results) / count:>7.3f}"
    )
    raised = sum(r.after_feedback > r.before_feedback for r in results if r.left_to_find)
    print(
        f"  a round of feedback raised residual nDCG@10 on {raised} of"
        f" {sum(r.left_to_find for r in results)} profiles with anything left to find"
    )


def time_digest(
    papers: Sequence[Paper], profiles: Mapping[str, Interests], stats: CorpusStats
) -> float:
    """Mean milliseconds to rank every paper for one subscriber, keeping ten, as a digest does."""
    started = time.perf_counter()
    for interests in profiles.values():
        rank_papers(
            papers,
            interests,
            stats=stats,
            trending_weight=0.3,
            limit=10,
            today=EVALUATION_DATE,
        )
    return (time.perf_counter() - started) * 1000 / len(profiles)


def time_prepared_digest(
    papers: Sequence[Paper], profiles: Mapping[str, Interests], stats: CorpusStats
) -> float:
    """Mean milliseconds per digest once a batch has prepared its candidates (best of 5 runs)."""
    prepared = prepare_candidates(papers, stats=stats, today=EVALUATION_DATE)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for interests in profiles.values():
            rank_prepared(prepared, interests, trending_weight=0.3, limit=10)
        runs.append((time.perf_counter() - started) * 1000 / len(profiles))
    return min(runs)


if __name__ == "__main__":
    main()
