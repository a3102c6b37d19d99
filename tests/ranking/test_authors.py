import pytest

from service.ranking.authors import AuthorKey, author_key, follow_authors


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Jürgen Müller", AuthorKey("muller", "j")),
        ("J. Müller", AuthorKey("muller", "j")),
        ("Jurgen Muller", AuthorKey("muller", "j")),
        ("JÜRGEN MÜLLER", AuthorKey("muller", "j")),
        ("Müller, Jürgen", AuthorKey("muller", "j")),
        ("J.-P. O'Neil", AuthorKey("neil", "j")),
        ("Anna van der Berg", AuthorKey("berg", "a")),
        ("van der Berg, Anna", AuthorKey("berg", "a")),
        ("Zoë Ångström", AuthorKey("angstrom", "z")),
        ("Müller", AuthorKey("muller", "")),
        ("  ", None),
        ("., -", None),
    ],
)
def test_author_key_folds_accents_case_and_given_names(name: str, key: AuthorKey | None) -> None:
    assert author_key(name) == key


@pytest.mark.parametrize(
    "followed", ["J. Müller", "Jürgen Müller", "Jurgen Muller", "MÜLLER, J.", "müller"]
)
def test_a_followed_name_finds_its_author_however_written(followed: str) -> None:
    authors = follow_authors([followed])

    assert authors.find(("Ada Lovelace", "Jürgen Müller")) == "Jürgen Müller"


@pytest.mark.parametrize("followed", ["K. Müller", "Jürgen Maier", "Hopper"])
def test_another_initial_or_surname_is_another_author(followed: str) -> None:
    assert follow_authors([followed]).find(("Ada Lovelace", "Jürgen Müller")) is None


def test_no_followed_names_find_nobody() -> None:
    assert follow_authors([]).find(("Jürgen Müller",)) is None
    assert follow_authors(["   "]).keys == ()
