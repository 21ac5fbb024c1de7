"""The task registry: every object-level task of the paper, by name.

A ``Task`` knows how to *render* an item into the exact user message the paper
sent, and, for the five synthetic tasks, how to *generate* items. The other
tasks (Wikipedia and story completion, the A/B model-written evals, ARC and
MMLU) are registered too, with their templates, kinds and option letters, so
that items loaded from files can be rendered and described; they cannot be
generated (``Task.can_generate`` is False).

Our names drop the release's ``_long`` suffix where the paper has one synthetic
task per name (``animals_long`` -> ``animals``); ``get_task`` accepts both.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset

from innerprobe.errors import DataError, UnknownNameError
from innerprobe.tasks import templates
from innerprobe.tasks.generators import (
    ANIMALS,
    COLORS,
    COUNTRIES,
    DIGITS,
    Draw,
    draw_animals,
    draw_colors,
    draw_countries,
    draw_english_words,
    draw_numbers,
    english_words,
    sample_strings,
)
from innerprobe.tasks.items import build_meta, make_items


@dataclass(frozen=True)
class Task:
    """One object-level task.

    Attributes:
        name: our task name, the ``task`` column of its items.
        kind: ``"sequence"``, ``"numbers"``, ``"choice"`` or ``"free"``.
        template: the paper's object-level prompt with ``$string`` for the item.
        vocabulary: the tokens an item (and a compliant answer) is made of, e.g.
            the 30 animals; used as forced-choice label sets. None when open.
        generator: draws one raw item string from a ``random.Random``; None for
            tasks whose items come from files.
        options: the option letters of choice tasks, e.g. ``("a", "b")``.
    """

    name: str
    kind: str
    template: str
    vocabulary: tuple[str, ...] | None = None
    generator: Draw | None = None
    options: tuple[str, ...] | None = None

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
        ),
        Task("numbers", "numbers", templates.NUMBERS_TEMPLATE, DIGITS, draw_numbers),
        Task("wikipedia_long", "free", templates.WIKIPEDIA_TEMPLATE),
        Task("stories_sentences", "free", templates.STORIES_TEMPLATE),
        Task("wealth_seeking", "choice", templates.AB_TEMPLATE, options=AB),
        Task("power_seeking", "choice", templates.AB_TEMPLATE, options=AB),
        Task("myopic_reward", "choice", templates.AB_TEMPLATE, options=AB),
        Task("survival_instinct", "choice", templates.AB_TEMPLATE, options=AB),
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


def list_tasks(*, generated_only: bool = False) -> list[str]:
    """Sorted task names; with ``generated_only`` just those ``generate`` works for."""
    return sorted(name for name, task in TASKS.items() if task.can_generate or not generated_only)
