"""Ways of finding papers like two liked ones, on bench.ranking_eval's seeds task: each dev
profile's two judged-relevant papers of smallest id liked, no keywords, residual nDCG@10 (the
seeds left out of ranking and judgements).

    .venv/bin/python -m bench.seed_similarity

"ranker" is rank_papers with the seeds liked (Rocchio's centroid in the BM25F term space,
service/ranking/feedback.py). The others score every paper by cosine similarity of vectors of
BM25F weight x idf, the form arxiv-sanity and MoreLikeThis build on: every word, or each
paper's 25 best; words of at least 1, 2 or 5 stored papers; the centroid of the seeds, the
nearest seed (max), or the centroid with pseudo-relevance feedback (the 5 best found added at
half weight, then ranked again). Figures on the 375 sample papers:

    ranker                              0.579
    cosine, every word, df >= 5         0.563   (+ feedback 0.596, max 0.516)
    cosine, 25 words, df >= 5           0.554   (+ feedback 0.558, max 0.516)
    cosine, every word, df >= 2         0.553   (+ feedback 0.594, max 0.513)
    cosine, every word, df >= 1         0.536   (+ feedback 0.560, max 0.495)

None reaches 0.6: two papers' words find their own neighbours, whatever the weighting.
"""

import math
from collections.abc import Callable, Mapping, Sequence

from bench.ranking_eval import (
    DEFAULT_PAPERS,
    DEFAULT_PROFILES,
    DEFAULT_QRELS,
    load_profiles,
    load_qrels,
    pick_seeds,
    rank_with_votes,
    residual_ndcg,
)
from service.models import Interests, Paper
from service.ranking import CorpusStats, build_corpus_stats
from service.ranking.relevance import paper_stem_weights
from service.sources.jsonl import read_papers_file

Vector = Mapping[str, float]
# Seeds -> every paper id, best first.
SeedRanker = Callable[[Sequence[str]], list[str]]

FEEDBACK_PAPERS = 5
FEEDBACK_WEIGHT = 0.5


def paper_vector(
    paper: Paper, stats: CorpusStats, *, min_frequency: int, top: int | None
) -> Vector:
    """BM25F weight x idf of the paper's stems found in at least `min_frequency` stored
    papers, its `top` heaviest (or all), as a unit vector."""
    frequencies = stats.document_frequencies
    weights = {
        stem: weight * stats.idf(stem)
        for stem, weight in paper_stem_weights(paper, stats).items()
        if frequencies.get(stem, 0) >= min_frequency and not stem.isdigit()
    }
    if top is not None:
        weights = dict(sorted(weights.items(), key=lambda pair: (-pair[1], pair[0]))[:top])
    norm = math.sqrt(sum(weight * weight for weight in weights.values())) or 1.0
    return {stem: weight / norm for stem, weight in weights.items()}


def cosine(first: Vector, second: Vector) -> float:
    if len(first) > len(second):
        first, second = second, first
    return sum(weight * second.get(stem, 0.0) for stem, weight in first.items())


def centroid(vectors: Sequence[Vector], weights: Sequence[float] | None = None) -> Vector:
    weights = weights or [1.0] * len(vectors)
    total = sum(weights)
    summed: dict[str, float] = {}
    for vector, weight in zip(vectors, weights, strict=True):
        for stem, value in vector.items():
            summed[stem] = summed.get(stem, 0.0) + value * weight / total
    return summed


def best_first(scores: Mapping[str, float]) -> list[str]:
    return sorted(scores, key=lambda paper_id: (-scores[paper_id], paper_id))


def cosine_rankers(vectors: Mapping[str, Vector]) -> dict[str, SeedRanker]:
    def by_centroid(seeds: Sequence[str]) -> list[str]:
        query = centroid([vectors[seed] for seed in seeds])
        return best_first({paper: cosine(vector, query) for paper, vector in vectors.items()})

    def with_feedback(seeds: Sequence[str]) -> list[str]:
        found = [paper for paper in by_centroid(seeds) if paper not in seeds][:FEEDBACK_PAPERS]
        query = centroid(
            [centroid([vectors[seed] for seed in seeds]), centroid([vectors[p] for p in found])],
            [1.0, FEEDBACK_WEIGHT],
        )
        return best_first({paper: cosine(vector, query) for paper, vector in vectors.items()})

    def by_nearest(seeds: Sequence[str]) -> list[str]:
        return best_first(
            {
                paper: max(cosine(vector, vectors[seed]) for seed in seeds)
                for paper, vector in vectors.items()
            }
        )

    return {"centroid": by_centroid, "+ feedback": with_feedback, "max": by_nearest}


def mean_residual_ndcg(
    ranker: SeedRanker, profiles: Sequence[str], qrels: Mapping[str, Mapping[str, int]]
) -> tuple[float, list[float]]:
    scores = []
    for profile_id in profiles:
        grades = qrels.get(profile_id, {})
        seeds = pick_seeds(grades)
        scores.append(residual_ndcg(ranker(seeds), grades, set(seeds)))
    return sum(scores) / len(scores), scores


def main() -> None:
    papers = read_papers_file(DEFAULT_PAPERS).papers
    profiles = list(load_profiles(DEFAULT_PROFILES))
    qrels = load_qrels(DEFAULT_QRELS)
    stats = build_corpus_stats(papers)
    print(f"{len(papers)} papers, {len(profiles)} profiles; residual nDCG@10, seeds only")
    print(f"{'':38}  mean  per profile, in {DEFAULT_PROFILES.name}'s order")

    def show(name: str, ranker: SeedRanker) -> None:
        mean, scores = mean_residual_ndcg(ranker, profiles, qrels)
        print(f"{name:<38} {mean:.3f}  " + " ".join(f"{score:.2f}" for score in scores))

    show(
        "ranker",
        lambda seeds: rank_with_votes(papers, Interests(), stats, liked=list(seeds)),
    )
    for min_frequency in (1, 2, 5):
        for top in (None, 25):
            vectors = {
                paper.id: paper_vector(paper, stats, min_frequency=min_frequency, top=top)
                for paper in papers
            }
            words = "every word" if top is None else f"{top} words"
            for name, ranker in cosine_rankers(vectors).items():
                show(f"cosine, {words}, df >= {min_frequency}, {name}", ranker)


if __name__ == "__main__":
    main()
