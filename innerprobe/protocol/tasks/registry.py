"""The task registry: every object-level task of the paper, by name.

A ``Task`` knows how to *render* an item into the exact user message the paper
sent, and, for the five synthetic tasks, how to *generate* items. Story
continuation (``stories_sentences``) and our dialogue task (``daily_dialog``,
not the paper's wording: see ``templates.DIALOGUE_TEMPLATE``) generate items of
our own making (see ``generators.draw_story`` / ``draw_dialogue``), so that
every task family can be measured without the release files. The other tasks
(Wikipedia completion, the A/B model-written evals, ARC and MMLU) are
registered too, with their templates, kinds and option letters, so that items
loaded from files can be rendered and described; they cannot be generated
(``Task.can_generate`` is False).

Our names drop the release's ``_long`` suffix where the paper has one synthetic
task per name (``animals_long`` -> ``animals``); ``get_task`` accepts both.

Every task belongs to a *family* (sequence, numbers, story, wikipedia, dialogue,
multiple_choice, ethical_stance), and each family has measured defaults
(:class:`FamilyDefaults`): the assistant prefill that opens the object-level
answer and its token budget. They were chosen from a table of SmolLM2's object
compliance per family and prefill (``experiments/compliance_table.py``, results
in ``experiments/results/compliance_by_task.md``): one prefill does not fit
every task, e.g. after ``Answer:`` SmolLM2 ends the story-continuation turn at
once. A prefill the user sets explicitly always wins over these defaults
(see ``innerprobe.protocol.prompts.PromptSpec.object_prefill_for``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from datasets import Dataset

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.protocol.tasks import templates
from innerprobe.protocol.tasks.generators import (
    ANIMALS,
    COLORS,
    COUNTRIES,
    DIGITS,
    Draw,
    draw_animals,
    draw_colors,
    draw_countries,
    draw_dialogue,
    draw_english_words,
    draw_numbers,
    draw_story,
    english_words,
    sample_strings,
)
from innerprobe.protocol.tasks.items import build_meta, make_items

GENERIC_OBJECT_PREFILL = "Answer:"
"""The prefill of tasks outside the registry (a user's own questions file)."""
GENERIC_OBJECT_MAX_NEW_TOKENS = 24
"""The object-level token budget of tasks outside the registry."""


@dataclass(frozen=True)
class FamilyDefaults:
    """Object-level settings a task family runs with when the user sets none.

    Attributes:
        object_prefill: assistant text that opens the object-level answer; None for none.
        object_max_new_tokens: greedy tokens of the object-level answer. Text families need the
            first three words (the word properties read up to the third); choice families are
            cut after the option letter, because SmolLM2 answers "C - building houses" where the
            paper's strict check wants the letter alone.
        evidence: one line on the measurement the choice rests on.
    """

    object_prefill: str | None
    object_max_new_tokens: int = GENERIC_OBJECT_MAX_NEW_TOKENS
    evidence: str = ""


FAMILY_DEFAULTS: MappingProxyType[str, FamilyDefaults] = MappingProxyType(
    {
        "sequence": FamilyDefaults("Answer:", evidence="24/24 with each prefill; Answer: kept"),
        "numbers": FamilyDefaults("Answer:", evidence="24/24 with each prefill; Answer: kept"),
        "story": FamilyDefaults(None, evidence="none 24/24; Answer: 4/24 (20 empty)"),
        "wikipedia": FamilyDefaults(None, evidence="none 24/24; Answer: 19/24"),
        "dialogue": FamilyDefaults(None, evidence="none 21/24 (3 'sorry' answers); Answer: 5/24"),
        "multiple_choice": FamilyDefaults(
            "Answer:", 2, evidence="2 tokens 24/24 with each prefill; 24 tokens 16/24 ('C - text')"
        ),
        "ethical_stance": FamilyDefaults(
            None, 2, evidence="none, 2 tokens 24/24; Answer: 21/24 (3 empty)"
        ),
    }
)
"""Measured defaults by task family (see ``experiments/results/compliance_by_task.md``)."""

FAMILIES: tuple[str, ...] = tuple(FAMILY_DEFAULTS)

KIND_FAMILIES: dict[str, str] = {
    "sequence": "sequence",
    "numbers": "numbers",
    "choice": "multiple_choice",
    "free": "wikipedia",
}
"""The family a task gets when it names none: the one its kind usually means."""


@dataclass(frozen=True)
class Task:
    """One object-level task.

    Attributes:
        name: our task name, the ``task`` column of its items.
        kind: ``"sequence"``, ``"numbers"``, ``"choice"`` or ``"free"``.
        template: the paper's object-level prompt with ``$string`` for the item.
        vocabulary: the tokens an item is made of, e.g. the 30 animals. None when open.
        generator: draws one raw item string from a ``random.Random``; None for
            tasks whose items come from files.
        options: the option letters of choice tasks, e.g. ``("a", "b")``.
        open_answers: whether compliant answers may be words outside ``vocabulary``
            (english_words: the model continues with any English word), so the vocabulary is
            no forced-choice label set.
        family: the task family whose :class:`FamilyDefaults` the task runs with; by default
            the family named like its kind (``sequence``, ``numbers``), ``multiple_choice``
            for ``choice`` and ``wikipedia`` for ``free``.
    """

    name: str
    kind: str
    template: str
    vocabulary: tuple[str, ...] | None = None
    generator: Draw | None = None
    options: tuple[str, ...] | None = None
    open_answers: bool = False
    family: str = ""

    def __post_init__(self) -> None:
        family = self.family or KIND_FAMILIES.get(self.kind, "")
        if family not in FAMILY_DEFAULTS:
            raise UnknownNameError(f"task family (of task {self.name!r})", family or self.kind, FAMILIES)
        object.__setattr__(self, "family", family)

    @property
    def defaults(self) -> FamilyDefaults:
        """The measured object-level defaults of this task's family."""
        return FAMILY_DEFAULTS[self.family]

    @property
    def answer_vocabulary(self) -> tuple[str, ...] | None:
        """The closed set compliant answers are drawn from (forced-choice word labels), or None."""
        return None if self.open_answers else self.vocabulary

    @property
    def can_generate(self) -> bool:
        """Whether ``generate`` works (synthetic tasks only)."""
        return self.generator is not None

    def render(self, string: str) -> str:
        """The object-level user message for one raw item, byte for byte as released.

        That is the template with ``string`` in place of ``$string`` and one
        trailing newline (see ``templates.PROMPT_END``).
        """
        return templates.render_prompt(self.template, string)

    def generate(self, n: int, *, split: str = "train", seed: int = 0) -> Dataset:
        """``n`` distinct items of ``split`` ("train" or "test"), the same for the same arguments.

        Ids are ``f"{name}-{split}-{index:05d}"``, with ``-s{seed}`` before the
        index when ``seed`` is not 0, so items from different seeds never share an id.
        """
        if self.generator is None:
            raise DataError(
                f"task {self.name!r} has no generator; load its items from a file "
                "(load_release, load_questions or load_hf)"
            )
        strings = sample_strings(self.generator, n, task=self.name, split=split, seed=seed)
        prefix = f"{self.name}-{split}" + (f"-s{seed}" if seed else "")
        source = f"generated:{self.name}:seed={seed}"
        return make_items(
            [
                {
                    "id": f"{prefix}-{index:05d}",
                    "task": self.name,
                    "question": self.render(string),
                    "meta": build_meta(self.kind, string, split, source=source),
                }
                for index, string in enumerate(strings)
            ]
        )


AB = ("a", "b")
ABCD = ("a", "b", "c", "d")


def _build_tasks() -> dict[str, Task]:
    sequences = templates.SEQUENCE_TEMPLATES
    tasks = [
        Task("animals", "sequence", sequences["animals"], ANIMALS, draw_animals),
        Task("colors", "sequence", sequences["colors"], COLORS, draw_colors),
        Task("countries", "sequence", sequences["countries"], COUNTRIES, draw_countries),
        Task(
            "english_words",
            "sequence",
            sequences["english_words"],
            english_words(),
            draw_english_words,
            open_answers=True,
        ),
        Task("numbers", "numbers", templates.NUMBERS_TEMPLATE, DIGITS, draw_numbers),
        Task("wikipedia_long", "free", templates.WIKIPEDIA_TEMPLATE),
        Task("stories_sentences", "free", templates.STORIES_TEMPLATE, generator=draw_story,
             family="story"),
        Task("daily_dialog", "free", templates.DIALOGUE_TEMPLATE, generator=draw_dialogue,
             family="dialogue"),
        *(
            Task(name, "choice", templates.AB_TEMPLATE, options=AB, family="ethical_stance")
            for name in ("wealth_seeking", "power_seeking", "myopic_reward", "survival_instinct")
        ),
        Task("arc_challenge_non_cot", "choice", templates.MULTIPLE_CHOICE_TEMPLATE, options=ABCD),
        Task("mmlu_non_cot", "choice", templates.MULTIPLE_CHOICE_TEMPLATE, options=ABCD),
    ]
    return {task.name: task for task in tasks}


TASKS: dict[str, Task] = _build_tasks()
"""Every known task by our name."""

RELEASE_NAMES: dict[str, str] = {
    "animals_long": "animals",
    "colors_long": "colors",
    "countries_long": "countries",
    "english_words_long": "english_words",
}
"""The release's ``original_dataset`` names that we rename; all others are kept."""


def canonical_task_name(name: str) -> str:
    """Our name for a task named as in the paper's release (``animals_long`` -> ``animals``)."""
    return RELEASE_NAMES.get(name, name)


def get_task(name: str) -> Task:
    """The task called ``name`` (ours or the release's); UnknownNameError lists the valid ones."""
    canonical = canonical_task_name(name)
    if canonical not in TASKS:
        raise UnknownNameError("task", name, TASKS)
    return TASKS[canonical]


def object_defaults(task: str | None) -> FamilyDefaults:
    """The object-level defaults for items of ``task``: its family's, or the generic ones.

    Tasks outside the registry (a user's questions file names its own task) get the generic
    ``Answer:`` prefill and 24 tokens.
    """
    known = TASKS.get(canonical_task_name(task)) if task else None
    if known is None:
        return FamilyDefaults(GENERIC_OBJECT_PREFILL, evidence="generic default (task not registered)")
    return known.defaults


def list_tasks(*, generated_only: bool = False) -> list[str]:
    """Sorted task names; with ``generated_only`` just those ``generate`` works for."""
    return sorted(name for name, task in TASKS.items() if task.can_generate or not generated_only)
