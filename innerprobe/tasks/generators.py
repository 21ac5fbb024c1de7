"""Seeded generators for the paper's synthetic tasks, with disjoint train/test splits.

Each task has a *draw* function: given a ``random.Random`` it returns one raw
item string, e.g. ``"deer cow deer chicken fish rabbit deer rat "``. The
formats follow the paper's generation scripts as seen in its data release:

- animals: 7-10 draws *with* replacement from 30 animals, space-joined with a
  trailing space;
- colors: 5 *distinct* colors from about 100 (every released row has five
  different colors), no trailing space;
- countries: 3-6 distinct countries, no trailing space;
- english_words: 7-10 words with replacement, trailing space (same notebook as
  animals; the paper drew from NLTK ``words``, we draw from wordfreq's common
  English words so that the items are in-distribution for small models);
- numbers: 3-6 random digits, space-joined, e.g. ``"3 0 1 9 1 1"``.

Splits are disjoint *by construction*: an item string belongs to the test split
when the SHA-256 of its normalised text is 0 mod 5, otherwise to train. So a
sequence can never be in both, whatever seeds were used. ``sample_strings``
draws candidates from a stream seeded by ``(seed, task, split)``, keeps those of
the wanted split and drops repeats, so the same arguments always give the same
items and a larger ``n`` extends a smaller one.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import wordfreq
from datasets import Dataset

from innerprobe.errors import DataError
from innerprobe.tasks.items import build_meta, make_items, normalise
from innerprobe.tasks.templates import AB_TEMPLATE, MULTIPLE_CHOICE_TEMPLATE, render_prompt

Draw = Callable[[random.Random], str]
"""Draw one raw item string from a seeded random stream."""

SPLITS: tuple[str, ...] = ("train", "test")
TEST_BUCKETS = 5
"""One string in ``TEST_BUCKETS`` (by hash) is a test item: an 80/20 split."""

ANIMALS: tuple[str, ...] = (
    "bear", "cat", "chicken", "cow", "deer", "dog", "duck", "elephant", "fish", "fox",
    "frog", "giraffe", "goat", "horse", "kangaroo", "lion", "lizard", "mouse", "panda", "pig",
    "rabbit", "rat", "shark", "sheep", "snake", "squirrel", "tiger", "turtle", "wolf", "zebra",
)  # fmt: skip
"""The 30 animals of the release (all 30 occur in its animals_long sample)."""

COLORS: tuple[str, ...] = (
    "amber", "apricot", "aquamarine", "ash", "azure", "beige", "bisque", "black", "blue",
    "brass", "bronze", "brown", "burgundy", "canary", "cayenne", "celadon", "cerulean",
    "champagne", "charcoal", "chartreuse", "cherry", "chestnut", "cobalt", "copper", "coral",
    "cornflower", "cream", "crimson", "cyan", "dandelion", "denim", "ebony", "eggplant",
    "emerald", "forest", "fuchsia", "glacier", "gold", "gray", "green", "honeydew", "indigo",
    "ivory", "jade", "khaki", "lavender", "lemon", "lilac", "lime", "magenta", "mahogany",
    "mango", "marigold", "maroon", "mauve", "midnight", "mint", "moss", "mulberry", "mustard",
    "navy", "ochre", "olive", "orange", "orchid", "peach", "pearl", "periwinkle", "pewter",
    "pink", "pistachio", "plum", "puce", "pumpkin", "purple", "red", "rose", "ruby", "rust",
    "saffron", "sage", "salmon", "sangria", "sapphire", "scarlet", "sepia", "silver", "sky",
    "slate", "tan", "tangerine", "taupe", "teal", "terracotta", "turquoise", "vermilion",
    "violet", "white", "wisteria", "yellow",
)  # fmt: skip
"""100 single-word colors: the 89 seen in the release sample plus 11 common ones."""

COUNTRIES: tuple[str, ...] = (
    "afghanistan", "albania", "algeria", "angola", "argentina", "armenia", "australia",
    "austria", "bangladesh", "belgium", "bolivia", "brazil", "bulgaria", "cambodia",
    "cameroon", "canada", "chile", "china", "colombia", "croatia", "cuba", "cyprus",
    "denmark", "ecuador", "egypt", "estonia", "ethiopia", "finland", "france", "georgia",
    "germany", "ghana", "greece", "guatemala", "haiti", "honduras", "hungary", "iceland",
    "india", "indonesia", "iran", "iraq", "ireland", "israel", "italy", "jamaica", "japan",
    "jordan", "kazakhstan", "kenya", "kuwait", "laos", "latvia", "lebanon", "libya",
    "lithuania", "madagascar", "malaysia", "mali", "malta", "mexico", "mongolia", "morocco",
    "mozambique", "nepal", "netherlands", "nicaragua", "nigeria", "norway", "oman",
    "pakistan", "panama", "paraguay", "peru", "philippines", "poland", "portugal", "qatar",
    "romania", "russia", "rwanda", "senegal", "serbia", "singapore", "slovakia", "slovenia",
    "somalia", "spain", "sudan", "sweden", "switzerland", "syria", "taiwan", "tanzania",
    "thailand", "tunisia", "turkey", "uganda", "ukraine", "uruguay", "venezuela", "vietnam",
    "yemen", "zambia", "zimbabwe",
)  # fmt: skip
"""Single-word lowercase country names, so every country is one whitespace token."""

DIGITS: tuple[str, ...] = tuple(str(digit) for digit in range(10))

ENGLISH_WORDS_TOP_N = 5000


@cache
def english_words() -> tuple[str, ...]:
    """wordfreq's 5000 most frequent English words, kept if ASCII-alphabetic and 3+ letters."""
    top = wordfreq.top_n_list("en", ENGLISH_WORDS_TOP_N)
    return tuple(word for word in top if word.isascii() and word.isalpha() and len(word) >= 3)


def draw_animals(rng: random.Random) -> str:
    """7-10 animals with replacement, space-joined, with the release's trailing space."""
    count = rng.randint(7, 10)
    return " ".join(rng.choice(ANIMALS) for _ in range(count)) + " "


def draw_colors(rng: random.Random) -> str:
    """Five distinct colors, space-joined."""
    return " ".join(rng.sample(COLORS, 5))


def draw_countries(rng: random.Random) -> str:
    """3-6 distinct countries, space-joined."""
    return " ".join(rng.sample(COUNTRIES, rng.randint(3, 6)))


def draw_english_words(rng: random.Random) -> str:
    """7-10 common English words with replacement, with a trailing space."""
    words = english_words()
    return " ".join(rng.choice(words) for _ in range(rng.randint(7, 10))) + " "


def draw_numbers(rng: random.Random) -> str:
    """3-6 random digits, space-joined."""
    return " ".join(rng.choice(DIGITS) for _ in range(rng.randint(3, 6)))


def split_of(string: str) -> str:
    """The split an item string belongs to, fixed by a hash of its normalised text."""
    digest = hashlib.sha256(normalise(string).encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_BUCKETS == 0 else "train"


def seeded_rng(seed: int, task: str, split: str) -> random.Random:
    """A random stream that depends only on ``(seed, task, split)``, never on global state."""
    material = f"{seed}|{task}|{split}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def sample_strings(draw: Draw, n: int, *, task: str, split: str, seed: int = 0) -> list[str]:
    """``n`` distinct item strings of ``split``, drawn deterministically.

    Candidates of the other split, and repeats (after ``normalise``), are
    skipped. If ``n`` distinct strings are not found within ``50 * n + 10_000``
    draws the space is (nearly) exhausted and a DataError says how many were found.
    """
    _check_split(split)
    if n < 1:
        raise DataError(f"need n >= 1 items, got n={n}")
    rng = seeded_rng(seed, task, split)
    seen: set[str] = set()
    strings: list[str] = []
    for _ in range(50 * n + 10_000):
        candidate = draw(rng)
        key = normalise(candidate)
        if key in seen or split_of(candidate) != split:
            continue
        seen.add(key)
        strings.append(candidate)
        if len(strings) == n:
            return strings
    raise DataError(
        f"task {task!r} split {split!r}: asked for {n} distinct items but only "
        f"{len(strings)} exist (or could be found); ask for fewer"
    )


# --- multiple-choice items -------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _option_map(options: object, where: str) -> dict[str, str]:
    """Options as an ordered ``{lowercase letter: text}`` dict.

    A list of texts is lettered a, b, c, ...; a dict must have single-letter keys.
    """
    if isinstance(options, Mapping):
        mapped = {str(letter).strip().lower(): str(text) for letter, text in options.items()}
    elif isinstance(options, Sequence) and not isinstance(options, str):
        mapped = {LETTERS[index]: str(text) for index, text in enumerate(options)}
    else:
        raise DataError(f"{where}: options must be a list of texts or a letter->text dict")
    if len(mapped) < 2:
        raise DataError(f"{where}: a choice item needs at least 2 options, got {len(mapped)}")
    bad = [letter for letter in mapped if len(letter) != 1 or letter not in LETTERS]
    if bad:
        raise DataError(f"{where}: option keys must be single letters, got {bad}")
    return mapped


def choice_body(question: str, options: Mapping[str, str]) -> str:
    """The question followed by one ``"A - text"`` line per option.

    This is the release's layout: model-written-eval questions end with
    ``"\\n\\nChoices:"`` and ARC's with ``"\\n\\nAnswer choices:"``, both part of the
    question text, so pass such a header inside ``question``.
    """
    lines = [f"{letter.upper()} - {text}" for letter, text in options.items()]
    return "\n".join([question, *lines])


def _target_letter(target: object, options: Mapping[str, str], where: str) -> str | None:
    if target is None or target == "":
        return None
    letter = str(target).strip().lower()
    if letter not in options:
        raise DataError(f"{where}: target {target!r} is not one of the options {list(options)}")
    return letter


def choice_items(
    records: list[Mapping[str, Any]],
    task: str,
    template: str | None = None,
    *,
    split: str = "test",
    source: str | None = None,
) -> Dataset:
    """Items for A/B or lettered multiple-choice questions.

    Each record has ``question``, ``options`` (a list of texts, lettered a, b,
    ... or a letter->text dict) and optionally ``target`` (a letter) and ``id``
    (default ``f"{task}-{split}-{index:05d}"``). The prompt is the paper's: the
    question, the ``"A - text"`` lines, then the A/B suffix for two options or
    the "Give the correct answer..." suffix otherwise, unless ``template``
    (containing ``$string``) is given. Meta ``options`` and ``target`` are
    lowercase letters.
    """
    items = []
    for index, record in enumerate(records):
        where = f"{task} record {index}"
        if not record.get("question"):
            raise DataError(f"{where}: missing question")
        options = _option_map(record.get("options"), where)
        body = choice_body(str(record["question"]), options)
        chosen = template or (AB_TEMPLATE if len(options) == 2 else MULTIPLE_CHOICE_TEMPLATE)
        meta = build_meta(
            "choice",
            body,
            split,
            options=list(options),
            target=_target_letter(record.get("target"), options, where),
            source=source,
        )
        items.append(
            {
                "id": str(record.get("id") or f"{task}-{split}-{index:05d}"),
                "task": task,
                "question": render_prompt(chosen, body),
                "meta": meta,
            }
        )
    return make_items(items)
