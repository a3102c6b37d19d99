"""bench.ranking_eval with the thesaurus's entry terms that were written from the dev profiles'
own wording taken out: how much of the lay-worded profiles' gain holds for phrasings the
thesaurus was not written against (the dev profiles are a sample; readers are not).

    .venv/bin/python -m bench.thesaurus_ablation

Same output as bench.ranking_eval; the first line says how many entry terms were removed.
"""

import sys

from service.ranking import thesaurus
from service.ranking.thesaurus import Heading

# Entry terms worded after the dev profiles (bench/data/dev-profiles.json).
DEV_WORDED = frozenset(
    {
        "spots things photos", "outlines things photos", "count people camera",
        "count cars camera", "pixels belong object", "what where picture", "help physicists",
        "help chemists", "help biologists", "scientific simulations", "speeding simulations",
        "slow simulations", "natural sciences", "research sciences", "new medicines",
        "new materials", "medicines", "materials", "weather", "climate", "trial error",
        "automated decision making", "control strategies", "learning control simulators",
        "agents environment", "improve strategy interacting", "specialised sub-networks",
        "few experts each input", "several tasks once", "one network several tasks",
        "how confident prediction", "recommend items", "trading", "farming", "telecom",
    }
)  # fmt: skip


def main() -> None:
    full = thesaurus.headings()
    kept = tuple(
        Heading(h.label, h.terms, tuple(e for e in h.entries if e not in DEV_WORDED)) for h in full
    )
    removed = sum(len(h.entries) for h in full) - sum(len(h.entries) for h in kept)
    print(f"thesaurus: {removed} of {sum(len(h.entries) for h in full)} entry terms removed")
    thesaurus.map_phrase.cache_clear()
    thesaurus._entry_stems.cache_clear()
    thesaurus.headings = lambda: kept  # type: ignore[assignment]
    from bench import ranking_eval

    sys.argv = [sys.argv[0]]
    ranking_eval.main()


if __name__ == "__main__":
    main()
