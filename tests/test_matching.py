"""Matching an arXiv entry to a digest's paper: exact titles, a shared family name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.papers.matching import (
    Candidate,
    choose,
    common_author,
    family_name,
    parse_name,
    strip_latex,
    title_key,
    title_query,
)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        # case, punctuation, whitespace and line wrapping
        (
            "Is PRM Necessary? Problem-Solving RL Implicitly Induces PRM Capability in LLMs",
            "Is PRM necessary? Problem-solving RL implicitly induces PRM capability in\n  LLMs",
        ),
        ("Mixture-of-Experts Models", "Mixture of Experts models"),
        (
            "Visual Planning: Let's Think Only with Images",
            "Visual Planning: Let’s Think Only with Images",
        ),
        ("Demons in the Detail", "Demons in the   Detail."),
        # LaTeX remnants
        (
            "BLEUBERI: BLEU is a surprisingly effective reward",
            r"\textsc{BLEUBERI}: BLEU is a Surprisingly Effective Reward",
        ),
        ("O(n^2) attention -- fast", r"$O(n^2)$ Attention --- Fast"),
        ("Q&A at 100% scale", r"Q\&A at 100\% Scale"),
        ("α-Fair Learning", r"$\alpha$-Fair Learning"),
        ("Café models", r"Caf\'e Models"),
        ("Über Models", r"\"{U}ber models"),
        ("TeX is fine", r"\TeX{} is \emph{fine}"),
        # Unicode: NFKC (full-width, ligatures), composed vs decomposed, Hangul
        ("ＧＰＴ-4 Technical Report", "GPT-4 technical report"),
        ("Efficient ﬁne-tuning", "Efficient fine-tuning"),
        ("한국어 모델", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165 모델"),
        ("Łukasz's Law", "Lukasz's law"),
    ],
)
def test_titles_equal_after_normalisation(ours, theirs):
    assert title_key(ours) == title_key(theirs)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            "Inference-Time Scaling for Generalist Reward Modeling",
            "Inference-Time Scaling for Generalist Reward Models",
        ),
        ("Scaling Laws for Sparsity", "Scaling Laws for Sparsity, Revisited"),
        ("GPT-4 Technical Report", "GPT-3 Technical Report"),
        ("한국어 모델", "한국어 모형"),
        ("A 50% cut", "A 5% cut"),
    ],
)
def test_near_misses_differ(ours, theirs):
    assert title_key(ours) != title_key(theirs)


def test_strip_latex_keeps_plain_text():
    assert strip_latex("Plain title: with (parens) & 50% of it") == (
        "Plain title: with (parens) & 50% of it"
    )
    assert strip_latex(r"\textbf{Bold} and \mathcal{O}(n) and \$5") == "Bold and O(n) and $5"


@pytest.mark.parametrize(
    ("name", "given", "family"),
    [
        ("Eric P. Xing", ("eric", "p"), "xing"),
        ("Xing, Eric P.", ("eric", "p"), "xing"),
        ("E. P. Xing", ("e", "p"), "xing"),
        ("Xing E.P.", ("ep",), "xing"),
        ("Jensen (Jinghao)Zhou", ("jensen",), "zhou"),
        ("Ivan Vulić", ("ivan",), "vulic"),
        (r"Ivan Vuli\'c", ("ivan",), "vulic"),
        ("Li-Wen Chang", ("liwen",), "chang"),
        ("ziqi wang", ("ziqi",), "wang"),
        ("Martin Luther King, Jr.", ("martin", "luther"), "king"),
        ("Laurens van der Maaten", ("laurens", "van", "der"), "maaten"),
        ("김예경", (), "김예경"),
    ],
)
def test_parse_name(name, given, family):
    parsed = parse_name(name)
    assert parsed is not None
    assert (parsed.given, parsed.family) == (given, family)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (["Fan Zhou", "Zengzhi Wang"], ["F. Zhou"]),  # initials
        (["Kim Yekyung"], ["Yekyung Kim"]),  # Korean name in either order
        (["Zhou Fan"], ["Fan Zhou"]),  # Chinese name in either order
        (["Ivan Vulić"], ["Ivan Vulic"]),  # diacritics
        (["Jensen (Jinghao)Zhou"], ["Jensen Zhou"]),  # nickname
        (["Eric P. Xing"], ["Xing, Eric"]),  # 'Family, Given'
        (["Laurens van der Maaten"], ["L. van der Maaten"]),
        (["ziqi wang"], ["Ziqi Wang"]),
        (["Fan Zhou"], ["Zhou"]),  # a mononym is a family name
    ],
)
def test_common_author_found(ours, theirs):
    assert common_author(ours, theirs) is not None


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (["Fan Zhou"], ["Fan Li"]),  # a given name is not a family name
        (["Kim Yekyung"], ["Y. Kim"]),  # swapped order with an initial: not enough
        (["Alice Example"], ["Bob Sample"]),
        (["김예경"], ["Yekyung Kim"]),  # different scripts never match
    ],
)
def test_common_author_refused(ours, theirs):
    assert common_author(ours, theirs) is None


def test_query_is_plain_lower_case_phrases():
    assert title_query("MegaScale-Infer: Serving Mixture-of-Experts at Scale") == (
        'ti:"megascale infer serving mixture of experts at scale"'
    )
    # An apostrophe ends a phrase and its word is left out; AND is lower case inside.
    assert title_query("Visual Planning: Let's Think AND Act") == (
        'ti:"visual planning" AND ti:"think and act"'
    )
    assert title_query(r"\textsc{Bleuberi}: 50\% \"Off\"") == 'ti:"bleuberi 50 off"'


MEGAMATH = "MegaMath: Pushing the Limits of Open Math Corpora"
AUTHORS = ("Fan Zhou", "Zengzhi Wang", "Eric P. Xing")


def cand(ident, title=MEGAMATH, authors=AUTHORS, published="2025-04-03T17:52:07+00:00"):
    return Candidate(ident, title, tuple(authors), "cs.CL", published)


def test_choose_the_exact_title_by_our_authors():
    other = cand("2502.00001", authors=("Alice Example",))
    near = cand("2503.00002", title=MEGAMATH + " Revisited")
    right = cand("2504.02807", title=MEGAMATH.upper())
    verdict = choose(MEGAMATH, AUTHORS, [near, other, right])
    assert verdict.candidate == right


def test_choose_explains_every_refusal():
    assert choose(MEGAMATH, AUTHORS, []).reason == "arXiv has no paper with this title"
    near = choose(MEGAMATH, AUTHORS, [cand("2503.00002", title=MEGAMATH + " Revisited")])
    assert near.candidate is None
    assert "no arXiv title matches exactly" in near.reason and "2503.00002" in near.reason
    other = choose(MEGAMATH, AUTHORS, [cand("2502.00001", authors=["Alice Example", "Bob Sample"])])
    assert other.candidate is None
    assert other.reason == (
        "arXiv 2502.00001 has this title but none of our authors (Alice Example, Bob Sample)"
    )


def test_choose_is_stable_among_duplicates():
    later = cand("2504.99999", published="2025-04-20T00:00:00+00:00")
    first = cand("2504.02807")
    assert choose(MEGAMATH, AUTHORS, [later, first]).candidate == first
    assert choose(MEGAMATH, AUTHORS, [first, later]).candidate == first


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["Eric", "P.", "Xing", "Jr.", "jr", "III", "E.P.", "_", "-", "x"]),
            st.text(alphabet="abcXYZ.-_,()'0 \\{}$~é", min_size=1, max_size=6),
        ),
        min_size=0,
        max_size=5,
    ).map(" ".join)
)
def test_family_name_is_parse_names_family(name):
    """The short path for plain ASCII names gives what parse_name gives."""
    parsed = parse_name(name)
    assert family_name(name) == (parsed.family if parsed is not None else None)
