"""A generated, Korean-heavy digest of many papers: the email size guard's workload.

    big_digest(papers=60, seed=17) -> Digest

Deterministic for a seed. Every paper has a long abstract (1,500-2,100
characters, English, some with URLs), a long Korean comment (500-900
characters of Hangul with English terms and URLs, as the authors write them),
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
_ENGLISH = _words(
    "we propose a method that improves the efficiency of large language models on "
    "long sequences while keeping accuracy on standard benchmarks our experiments show "
    "consistent gains across model sizes and datasets and the analysis attributes the "
    "improvement to better use of inference compute rather than more parameters in "
    "addition we release code and data to support future research on reasoning alignment "
    "and evaluation which remains an open problem for the community"
)
_KOREAN = _words(
    "이 논문은 긴 문맥에서 언어 모델의 효율을 높이는 방법을 제안합니다 실험 결과 모델 크기와 "
    "데이터셋 전반에서 일관된 개선을 보였고 분석에 따르면 더 많은 파라미터보다 추론 계산을 잘 "
    "쓰는 것이 핵심이라고 하네요 흥미로운 점은 학습 데이터의 품질이 성능에 큰 영향을 준다는 "
    "것이고 한국어 벤치마크에서도 비슷한 경향이 보인다는 점입니다 앞으로 정렬과 평가 방법이 "
    "어떻게 발전할지 지켜볼 만하네요 코드와 데이터도 공개되어 있어서 재현해 보기 좋습니다"
)
_TERMS = ("Attention", "RL", "MoE", "KV Cache", "Reward Model", "Post Norm", "LLM", "RLHF")
_TAGS = ("reasoning", "efficiency", "추론", "정렬", "long-context", "rl", "벤치마크", "moe")


def _sentence(rng: random.Random, words: list[str] | tuple[str, ...], low: int, high: int) -> str:
    chosen = [rng.choice(words) for _ in range(rng.randint(low, high))]
    return " ".join(chosen)


def _text(rng: random.Random, words: tuple[str, ...] | list[str], chars: int, end: str) -> str:
    out: list[str] = []
    length = 0
    while length < chars:
        sentence = _sentence(rng, words, 8, 18)
        if words is _KOREAN and rng.random() < 0.6:
            sentence = f"{rng.choice(_TERMS)}을 {sentence}"
        if rng.random() < 0.08:
            sentence += f" https://example.org/papers/{rng.randint(1000, 9999)}/code"
        sentence = sentence[0].upper() + sentence[1:] + end
        out.append(sentence)
        length += len(sentence) + 1
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
