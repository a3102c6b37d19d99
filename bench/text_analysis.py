"""What analysing a paper's text costs: every worker process analyses each of the day's papers,
and each paper its readers voted on, once a day, and an import analyses each new paper.

Run from the project root:

    .venv/bin/python -m bench.text_analysis

Prints CPU time per text for `analyse_text` (words, stop words, Snowball stems) and per paper
for `analyse_paper_text` (both fields, with each stem's positions), uncached, over the sample
papers; the best of five rounds, the stems' own cache warm as it is after a few papers.
"""

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from service.ranking.terms import analyse_paper_text, paper_text
from service.ranking.text import analyse_text
from service.sources.jsonl import read_papers_file

SAMPLE_PAPERS = Path(__file__).resolve().parent.parent / "service" / "sample_data" / "papers.jsonl"
ROUNDS = 5


def main() -> None:
    papers = read_papers_file(SAMPLE_PAPERS).papers
    fields = [paper_text(paper) for paper in papers]
    texts = [text for pair in fields for text in pair]
    analyse_uncached = analyse_paper_text.__wrapped__
    per_text = _best_microseconds(lambda: [analyse_text(text) for text in texts], len(texts))
    per_paper = _best_microseconds(
        lambda: [analyse_uncached(title, abstract) for title, abstract in fields], len(fields)
    )
    print(f"{len(papers)} sample papers, CPU per item, best of {ROUNDS} rounds:")
    print(f"  analyse_text        {per_text:7.1f} µs per title or abstract")
    print(f"  analyse_paper_text  {per_paper:7.1f} µs per paper")


def _best_microseconds(work: Callable[[], Sequence[object]], items: int) -> float:
    work()  # the stems' cache, as a running worker has it
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return 1e6 * best / items


if __name__ == "__main__":
    main()
