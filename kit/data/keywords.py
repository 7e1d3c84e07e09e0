"""Per-review keywords: the nouns a user would type when asking for a review.

A keyword is the lemma (dictionary form) of a noun in the review — "номера"
becomes "номер" — ranked by TF-IDF over the whole corpus, so the words that
say what this review is about ("завтрак", "парковка") beat words every
review has ("место", "раз"). Lemmas come from pymorphy3 (OpenCorpora
dictionary, offline). The same lemmatiser is what the keyword-coverage metric
uses, so a keyword counts as present whatever form the model writes it in.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable

# Nouns too generic to be something a user asks for, and nouns that occur only
# inside set phrases ("до сих пор", "без раздумий", "до свидания", "к сожалению").
GENERIC_NOUNS = frozenset(
    """
    место раз время год день ночь вечер утро человек люди отзыв вещь дело сторона итог
    минус плюс впечатление спасибо город конец часть случай неделя минута час секунда
    месяц момент жизнь всё что-то кто-то ничто никто друг подруга муж жена ребёнок дети
    мама папа семья компания вопрос проблема ситуация результат рубль руб тысяча раза
    сотня десяток пара половина вид образ тип уровень норма общий целое штука весь
    пора раздумье свидание сожаление счастье принцип смысл слава бог итого первое
    """.replace("ё", "е").split()  # lemmas are compared with ё written as е
)
_WORD_RE = re.compile(r"[а-яёa-z]+(?:-[а-яёa-z]+)*")
_CHOICES_OF_K = (1, 2, 2, 3, 3, 3, 4, 4, 5)


@functools.cache
def _morph():
    import pymorphy3

    return pymorphy3.MorphAnalyzer()


@functools.lru_cache(maxsize=500_000)
def _analyse(token: str) -> tuple[str, bool]:
    """(lemma, is_keyword_candidate) for one lower-case token, cached: a corpus
    has far fewer distinct word forms than words, and parsing is the slow part."""
    parse = _morph().parse(token)[0]
    lemma = parse.normal_form.replace("ё", "е")
    is_latin = "LATN" in parse.tag
    candidate = (
        (parse.tag.POS == "NOUN" or is_latin)
        and len(lemma) >= 3
        and lemma not in GENERIC_NOUNS
        # Staff first names and surnames are not what a place is about. Only
        # trust that tag for dictionary words: for unknown words ("круассаны")
        # pymorphy3 guesses and often guesses Name.
        and not (parse.is_known and ("Name" in parse.tag or "Surn" in parse.tag))
    )
    return lemma, candidate


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (Cyrillic and Latin, hyphenated words kept whole).

    Example:
        >>> tokenize("Wi-Fi не работал, а кофе — ОТЛИЧНЫЙ!")
        ['wi-fi', 'не', 'работал', 'а', 'кофе', 'отличный']
    """
    return _WORD_RE.findall(text.lower())


def lemmatize(text: str) -> list[str]:
    """The lemma of every word in `text` (`ё` written as `е` so spellings match).

    Example:
        >>> lemmatize("Номера чистые, завтраки вкусные")
        ['номер', 'чистый', 'завтрак', 'вкусный']
    """
    return [_analyse(t)[0] for t in tokenize(text)]


def candidate_lemmas(text: str) -> list[str]:
    """Noun lemmas of `text` that could be keywords, in order, repeats kept.

    Example:
        >>> candidate_lemmas("Отличное место, вкусный кофе и свежие круассаны")
        ['кофе', 'круассан']
    """
    return [lemma for lemma, ok in map(_analyse, tokenize(text)) if ok]


class KeywordExtractor:
    """Pick a review's keywords by TF-IDF of its noun lemmas.

    Call `fit` on the corpus once (document frequencies), then `extract` per
    review.

    Args:
        min_df: A lemma must occur in at least this many reviews (drops typos).
        max_df_share: Lemmas in more than this share of reviews are too common.

    Example:
        >>> texts = ["Вкусный кофе и круассаны", "Кофе остыл, персонал грубый",
        ...          "Чистый номер и хороший завтрак", "Номер маленький, завтрак скудный"]
        >>> kx = KeywordExtractor(min_df=1, max_df_share=0.5).fit(texts)
        >>> kx.extract("Вкусный кофе и круассаны", k=2)
        ['кофе', 'круассан']
    """

    def __init__(self, *, min_df: int = 2, max_df_share: float = 0.3):
        self.min_df = min_df
        self.max_df_share = max_df_share
        self.df: Counter[str] = Counter()
        self.n_docs = 0

    def fit(self, texts: Iterable[str]) -> KeywordExtractor:
        """Count in how many texts each candidate lemma occurs."""
        for text in texts:
            self.df.update(set(candidate_lemmas(text)))
            self.n_docs += 1
        return self

    def idf(self, lemma: str) -> float:
        df = self.df.get(lemma, 0)
        if df < self.min_df or (self.n_docs and df > self.max_df_share * self.n_docs):
            return 0.0
        return math.log((1 + self.n_docs) / (1 + df)) + 1.0

    def extract(self, text: str, k: int) -> list[str]:
        """Up to `k` keywords of `text`, in the order they first appear in it."""
        lemmas = candidate_lemmas(text)
        tf = Counter(lemmas)
        first = {}
        for i, lemma in enumerate(lemmas):
            first.setdefault(lemma, i)
        scored = [(tf[lemma] * self.idf(lemma), -first[lemma], lemma) for lemma in tf]
        scored = [s for s in scored if s[0] > 0]
        best = sorted(scored, reverse=True)[:k]
        return [lemma for _, _, lemma in sorted(best, key=lambda s: -s[1])]


def keyword_count(unit: float) -> int:
    """How many keywords a training request gets (1–5, mostly 2–4), from a number in [0, 1).

    Users ask with a varying number of keywords; training on a spread teaches
    the model to honour however many it is given.

    Example:
        >>> keyword_count(0.0), keyword_count(0.99)
        (1, 5)
    """
    return _CHOICES_OF_K[min(int(unit * len(_CHOICES_OF_K)), len(_CHOICES_OF_K) - 1)]
