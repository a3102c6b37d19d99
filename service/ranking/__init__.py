"""Ranking papers for one reader: text analysis, corpus statistics, BM25F relevance blended
with the trending signal, and the line saying why each paper was picked. Pure and
deterministic: no I/O, no clock, no globals."""
