"""A generated, Korean-heavy digest of many papers: the email size guard's workload.

    big_digest(papers=60, seed=17) -> Digest

Deterministic for a seed. Every paper has a long abstract (1,500-2,100
characters of English sentences, some with URLs), a long Korean comment
(500-900 characters of Hangul with English terms and URLs, as the authors
write them),
a long English comment, 6-30 authors and 1-4 tags (some in Hangul). Written
in the digest file format (`format_digest`) and parsed back with the real
parser, so it is a digest the program would accept from a file.
"""

from __future__ import annotations

import datetime as dt
import random

from newsletter.digest import format_digest, parse_digest
from newsletter.model import Digest, Entry

DATE = dt.date(2025, 6, 2)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_TITLE_WORDS = _words(
    "Scaling Sparse Mixture Experts Reasoning Language Models Long Context Retrieval "
    "Augmented Generation Efficient Attention Diffusion Policy Reward Modeling Alignment "
    "Preference Optimization Vision Transformers Tokenizer Multilingual Korean Benchmark "
    "Inference-Time Compute Distillation Quantization Speculative Decoding Agents Tool Use"
)
_FAMILY = _words(
    "Kim Lee Park Choi Jung Kang Cho Yoon Jang Lim Han Oh Seo Shin Kwon Hwang Ahn Song "
    "Zhou Wang Liu Zhang Chen Li Yang Wu Smith Müller García Novák Dubois Rossi Tanaka"
)
_GIVEN = _words(
    "Minjun Seoyeon Jiho Hayoon Doyun Seojun Jiwoo Yuna Eric Fan Wei Anna Lucía Jan "
    "Chloé Marco Haruto Priya Olga Sanjay Zengzhi Ruidong"
)
# Whole sentences, shuffled: prose as an abstract is written (word salad would
# be scored as spam for what it is, e.g. SpamAssassin's LONGWORDS).
_ENGLISH = (
    "We propose a method that makes large language models faster on long inputs",
    "It keeps the accuracy of the base model on all of the standard benchmarks",
    "Our experiments show gains at every model size we tried, from 1B to 70B",
    "The analysis finds that the gains come from how the compute is spent, not from size",
    "We also find that the quality of the data matters more than its amount",
    "On reasoning tasks the model is as good as one that is four times larger",
    "The code and the data are open, so that others can build on the work",
    "This is a step toward models that think before they answer",
    "A small change to the attention layer is all it takes",
    "We study why this works and when it does not",
    "The method is simple to add to an existing training run",
    "Results on math, code and Korean benchmarks are in the paper",
)
_KOREAN = (
    "이 논문은 긴 문맥에서 언어 모델의 효율을 높이는 방법을 제안합니다",
    "실험 결과 모델 크기와 데이터셋 전반에서 일관된 개선을 보였네요",
    "분석에 따르면 더 많은 파라미터보다 추론 계산을 잘 쓰는 것이 핵심이라고 합니다",
    "흥미로운 점은 학습 데이터의 품질이 성능에 큰 영향을 준다는 것입니다",
    "한국어 벤치마크에서도 비슷한 경향이 보인다는 점이 반갑네요",
    "앞으로 정렬과 평가 방법이 어떻게 발전할지 지켜볼 만합니다",
    "코드와 데이터도 공개되어 있어서 재현해 보기 좋습니다",
    "구조는 단순한데 효과가 꽤 크다는 것이 놀랍습니다",
)
_TERMS = ("Attention", "RL", "MoE", "KV Cache", "Reward Model", "Post Norm", "LLM", "RLHF")
_TAGS = ("reasoning", "efficiency", "추론", "정렬", "long-context", "rl", "벤치마크", "moe")


def _text(rng: random.Random, sentences: tuple[str, ...], chars: int, end: str) -> str:
    out: list[str] = []
    length = 0
    while length < chars:
        sentence = rng.choice(sentences)
        if sentences is _KOREAN and rng.random() < 0.6:
            sentence = f"{rng.choice(_TERMS)}을 중심으로 보면 {sentence}"
        if rng.random() < 0.08:
            sentence += f" https://example.org/papers/{rng.randint(1000, 9999)}/code"
        out.append(sentence + end)
        length += len(sentence) + 2
    return " ".join(out)


def big_entry(rng: random.Random, number: int) -> Entry:
    title = " ".join(rng.choice(_TITLE_WORDS) for _ in range(rng.randint(6, 12)))
    authors = tuple(
        f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}" for _ in range(rng.randint(6, 30))
    )
    return Entry(
        title=f"{title} {number}",
        authors=authors,
        abstract=_text(rng, _ENGLISH, rng.randint(1500, 2100), "."),
        comment_ko=_text(rng, _KOREAN, rng.randint(500, 900), "."),
        comment_en=_text(rng, _ENGLISH, rng.randint(400, 700), "."),
        tags=tuple(rng.sample(_TAGS, rng.randint(1, 4))),
    )


def big_digest(papers: int = 60, seed: int = 17, date: dt.date = DATE) -> Digest:
    """`papers` generated papers for `date`, parsed from the digest file format."""
    rng = random.Random(seed)
    entries = tuple(big_entry(rng, number) for number in range(1, papers + 1))
    text = format_digest(Digest(date, entries, "generated"))
    return parse_digest(text, f"generated-{papers}-{seed}.txt").digest


def with_links(digest: Digest) -> Digest:
    """The digest with a paper link on four papers of five, as a lookup would
    give them: an arXiv id (new style) and category; every fifth paper none."""
    from newsletter.papers.links import PaperLink

    categories = ("cs.CL", "cs.LG", "cs.AI", "stat.ML")
    return digest.with_links(
        [
            None
            if number % 5 == 0
            else PaperLink.for_arxiv(f"2506.{number:05d}", categories[number % 4])
            for number in range(1, len(digest.entries) + 1)
        ]
    )
