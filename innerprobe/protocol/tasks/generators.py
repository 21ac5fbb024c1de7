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
- numbers: 3-6 random digits, space-joined, e.g. ``"3 0 1 9 1 1"``;
- stories and dialogues: our own story openings and short conversations (see
  :func:`draw_story`, :func:`draw_dialogue`), *not* the paper's items.

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

from innerprobe.core.errors import DataError
from innerprobe.protocol.tasks.items import build_meta, make_items, normalise
from innerprobe.protocol.tasks.templates import AB_TEMPLATE, MULTIPLE_CHOICE_TEMPLATE, render_prompt

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


# --- open-ended tasks without release items here -----------------------------
#
# The paper's story and dialogue prompts are not in the release sample beside this repo, so these
# two generators make *our own* items for them: seeded, split like the sequences, and clearly not
# the paper's. They exist so that every task family can be measured and tested (object
# compliance, defaults, forced choice); numbers on them are not comparable with the paper's.

STORY_OPENERS: tuple[str, ...] = (
    "Once upon a time", "One sunny morning", "Long ago", "Last summer", "On a rainy afternoon",
    "Every evening", "Early one winter day", "In the middle of the night",
)  # fmt: skip
STORY_CHARACTERS: tuple[str, ...] = (
    "a girl named Lily", "a boy named Max", "an old fisherman", "a little dog named Spot",
    "a shy dragon", "a curious cat named Tom", "a young baker named Sara", "two best friends",
    "a tired farmer", "a brave knight", "a small robot", "a grandmother named Rose",
)  # fmt: skip
STORY_EVENTS: tuple[str, ...] = (
    "lived in a small town by the sea", "found a strange key in the garden",
    "wanted to see the mountains", "heard a knock at the door", "lost a favourite red ball",
    "planted a tiny seed", "built a boat out of old boxes", "got a letter with no name on it",
    "saw a light in the forest", "decided to bake a big cake", "met a talking bird",
    "could not find the way home",
)  # fmt: skip


def draw_story(rng: random.Random) -> str:
    """One story opening sentence, e.g. ``"Once upon a time, a girl named Lily planted a tiny seed."``.

    Built from 8 openers x 12 characters x 12 events (1152 sentences) in the style of the
    release's only documented example ("Once upon a time, in a small town, there was a girl named
    Lily."). *Not* the paper's items: those are sentences of short LLM-written stories whose
    origin the paper does not document, and none are in the release sample here.
    """
    opener, character, event = (rng.choice(part) for part in (STORY_OPENERS, STORY_CHARACTERS, STORY_EVENTS))
    return f"{opener}, {character} {event}."


DIALOGUE_OPENINGS: tuple[tuple[str, str, str], ...] = (
    ("Hi, are you coming to the party tonight?", "I'm not sure yet. Who else is going?",
     "Most of the people from work."),
    ("Excuse me, is this seat taken?", "No, go ahead.", "Thanks. Are you waiting for the train to London?"),
    ("What do you want for dinner?", "How about pizza?", "We had pizza yesterday."),
    ("Did you finish the report?", "Almost. I need one more hour.", "The meeting starts at three."),
    ("Can I help you find something?", "Yes, I'm looking for a winter coat.", "What size do you wear?"),
    ("How was your weekend?", "Great, we went hiking.", "Where did you go?"),
    ("I think I left my keys at your place.", "I'll have a look.", "They have a blue ring on them."),
    ("Is it going to rain today?", "The forecast says it will.", "Then I'll take an umbrella."),
    ("Good morning, doctor.", "Good morning. What seems to be the problem?", "I've had a headache for days."),
    ("Do you know a good place for coffee?", "There's a nice cafe around the corner.",
     "Is it open on Sundays?"),
    ("Why are you so late?", "The bus broke down.", "You could have called me."),
    ("Have you seen my phone?", "It's on the kitchen table.", "Thanks, I was looking everywhere."),
    ("I'd like to book a table for two.", "For what time?", "Around eight, if possible."),
    ("Are you ready for the exam?", "Not really. I studied all night.", "Do you want to go over it together?"),
    ("How much is this shirt?", "It's twenty dollars.", "Do you have it in green?"),
    ("What time does the museum open?", "At nine in the morning.", "And how much are the tickets?"),
    ("I got the job!", "That's wonderful news!", "I start next Monday."),
    ("Could you turn the music down?", "Sorry, is it too loud?", "A little. I'm trying to sleep."),
    ("Where should we go on holiday?", "What about the beach?", "I'd rather go somewhere cooler."),
    ("Did you watch the game last night?", "Yes, what a finish!", "I can't believe they won."),
    ("My computer won't start.", "Did you check the power cable?", "Yes, it's plugged in."),
    ("Would you like some tea?", "Yes, please. No sugar.", "Milk?"),
    ("I haven't seen you in ages!", "I know, I've been so busy.", "What have you been up to?"),
    ("Is there a pharmacy near here?", "Yes, two blocks down this street.", "Is it on the left or the right?"),
)  # fmt: skip
"""24 short everyday conversations of three turns, written for this library."""

DIALOGUE_SPEAKERS: tuple[tuple[str, str], ...] = (
    ("A", "B"), ("Anna", "Ben"), ("Tom", "Maria"), ("Customer", "Clerk"), ("Sam", "Alex"), ("Mia", "Leo"),
)  # fmt: skip


def draw_dialogue(rng: random.Random) -> str:
    """The first 1-3 turns of a short conversation, one ``"Speaker: line"`` per line.

    Drawn from :data:`DIALOGUE_OPENINGS` (24 conversations) and :data:`DIALOGUE_SPEAKERS`
    (6 name pairs): 432 distinct items, about 86 of them in the test split. *Not* the paper's
    items: its code has a DailyDialog task (``daily_dialog``) that the final paper dropped and
    whose prompts are not in the release sample here; these openings are our own.
    """
    turns = rng.choice(DIALOGUE_OPENINGS)[: rng.randint(1, 3)]
    first, second = rng.choice(DIALOGUE_SPEAKERS)
    return "\n".join(f"{(first, second)[index % 2]}: {line}" for index, line in enumerate(turns))
