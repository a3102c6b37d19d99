"""Ranking papers for one reader: text analysis, corpus statistics, BM25F relevance to their
keywords and sentence, what their liked and disliked papers, followed authors and excluded
topics make of each paper, blended with the trending signal, and the line saying why each paper
was picked. Pure and deterministic: no I/O, no clock, no globals.

Read in this order: text (words and stems), terms (papers and interests analysed, corpus
statistics), relevance (BM25F), feedback (liked and disliked papers as Rocchio's centroids),
authors (names compared), profile (a reader's signals combined), topk (the best papers without
scoring every one), explain (the why-lines), score (the blend with trending, and the functions
below).
"""

from service.ranking.relevance import relevance_scores
from service.ranking.score import PreparedCandidates, prepare_candidates, rank_papers, rank_prepared
from service.ranking.terms import CorpusStats, build_corpus_stats

__all__ = [
    "CorpusStats",
    "PreparedCandidates",
    "build_corpus_stats",
    "prepare_candidates",
    "rank_papers",
    "rank_prepared",
    "relevance_scores",
]
