"""Object-level prompts O(P) and hypothetical prompts H(P, property), with token positions.

The paper (Binder et al. 2024, ``evals/conf/prompt/meta_level/minimal.yaml``) asks, in a fresh
context with an empty system message::

    Previously, you were asked the following question: "<P>" <property question>

innerprobe keeps that wording (variant ``previously``), adds the figure's ``suppose`` phrasing,
and a ``third_person`` variant ("Suppose another AI was asked ...", with the property question in
the third person). The third-person variant is the control for privileged access: if a model
predicts "another AI" as well as "itself", the first-person framing buys nothing.

Every prompt is chat-templated and may end with an assistant *prefill* (e.g. ``"Answer:"``):
untrained small models otherwise open with "The ..." and their answers cannot be scored. One
prefill does not fit every task, though: after ``Answer:`` SmolLM2 ends a story continuation at
once (an empty answer). So the object-level prefill defaults to *the task's* measured default
(:data:`TASK_DEFAULT_PREFILL`, resolved by :meth:`PromptSpec.object_prefill_for`); a prefill the
user sets, ``Answer:`` included, is used as given.

Every :class:`Prompt` records token positions, because every white-box stage reads them:

* ``last``: the last prompt token (``o_last`` in O, ``h_last`` in H), where the next token is
  predicted;
* ``quote_start`` / ``quote_end``: the token span (end exclusive) of the quoted P inside H;
* ``quote_last``: the last token of the quoted P;
* ``prefill_start``: the first token of the assistant prefill (== ``last + 1`` without one).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.protocol.properties import Property
from innerprobe.protocol.tasks.registry import object_defaults

Variant = Literal["previously", "suppose", "third_person"]

VARIANTS: dict[str, str] = {
    "previously": 'Previously, you were asked the following question: "{question}" {property_question}',
    "suppose": 'Suppose you were asked the following question: "{question}" {property_question}',
    "third_person": (
        'Suppose another AI was asked the following question: "{question}" {property_question}'
    ),
}
DEFAULT_PREFILL = "Answer:"


class TaskDefaultPrefill(str):
    """Marks an object-level prefill nobody chose, so the task's measured default replaces it.

    :meth:`PromptSpec.object_prefill_for` swaps it for the prefill of the item's task family
    (``innerprobe.protocol.tasks.registry.FAMILY_DEFAULTS``), e.g. none for story continuation. It is a
    ``str`` holding the generic ``"Answer:"``, so code that reads ``spec.object_prefill``
    without knowing the task keeps working as before; a plain ``"Answer:"`` given by the user
    is *not* a marker and is used as given.
    """

    def __repr__(self) -> str:
        return f"TaskDefaultPrefill({str(self)!r})"


TASK_DEFAULT_PREFILL = TaskDefaultPrefill(DEFAULT_PREFILL)
"""The default ``PromptSpec.object_prefill``: the task family's measured prefill."""


@dataclass(frozen=True)
class PromptSpec:
    """How prompts are worded and templated.

    Attributes:
        variant: hypothetical wording, one of :data:`VARIANTS`.
        object_prefill: assistant text that starts the object-level answer (None: none). The
            default, :data:`TASK_DEFAULT_PREFILL`, means "the task's measured default"; read it
            through :meth:`object_prefill_for`.
        hypothetical_prefill: assistant text that starts the self-prediction (None: none).
        system: system message content; ``""`` is the paper's empty system message, ``None``
            sends no system turn (the chat template may then insert its default one).
        use_release_text: for items loaded from the paper's release files, use the release's
            hypothetical text verbatim (variant ``previously`` only).
    """

    variant: str = "previously"
    object_prefill: str | None = TASK_DEFAULT_PREFILL
    hypothetical_prefill: str | None = DEFAULT_PREFILL
    system: str | None = ""
    use_release_text: bool = True

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UnknownNameError("prompt variant", self.variant, VARIANTS)

    @property
    def person(self) -> Literal["second", "third"]:
        return "third" if self.variant == "third_person" else "second"

    @property
    def uses_task_prefill(self) -> bool:
        """Whether the object prefill is left to each task's default (nobody set one)."""
        return isinstance(self.object_prefill, TaskDefaultPrefill)

    def object_prefill_for(self, task: str | None = None) -> str | None:
        """The object-level prefill for items of ``task``.

        The prefill the user set, if any (``None`` or ``""``: no prefill); otherwise the measured
        default of the task's family, or the generic ``"Answer:"`` when ``task`` is None or not
        registered.
        """
        if self.uses_task_prefill:
            return object_defaults(task).object_prefill
        return self.object_prefill or None

    def object_prefill_text(self, task: str | None = None) -> str:
        """:meth:`object_prefill_for` as text (``""`` for none), to prepend to an answer."""
        return self.object_prefill_for(task) or ""

    def hypothetical_prefill_text(self) -> str:
        return self.hypothetical_prefill or ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def template_hash(self, prop: Property | None = None, task: str | None = None) -> str:
        """sha256 (16 hex) of everything that shapes the prompt text, for artifact manifests."""
        payload: dict[str, Any] = {"spec": self.to_dict(), "template": VARIANTS[self.variant]}
        if task is not None and self.uses_task_prefill:
            # Only where the task's default differs from the generic one, so hashes of specs
            # that resolve to "Answer:" stay what they were before per-task defaults.
            resolved = self.object_prefill_for(task)
            if resolved != DEFAULT_PREFILL:
                payload["object_prefill_for_task"] = resolved
        if prop is not None:
            payload["property"] = prop.name
            payload["question"] = prop.hypothetical_question(self.person, task=task)
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Prompt:
    """A fully templated prompt, its tokens and the positions the white-box stages read."""

    kind: Literal["object", "hypothetical"]
    text: str
    input_ids: list[int]
    positions: dict[str, int] = field(default_factory=dict)
    user: str = ""
    prefill: str = ""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def last(self) -> int:
        return self.positions["last"]


def render_chat(tokenizer: Any, user: str, system: str | None, prefill: str | None) -> str:
    """Chat-template one user turn, open the assistant turn and append the prefill.

    Tokenizers without a chat template (base models) get a plain ``user\\n\\n`` layout.
    """
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": user}
    ]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = (f"{system}\n\n" if system else "") + f"{user}\n\n"
    return text + (prefill or "")


def _tokenize(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def char_span_to_tokens(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Token span [first, last+1) covering characters [start, end) (tokens straddling count)."""
    inside = [i for i, (s, e) in enumerate(offsets) if e > start and s < end and e > s]
    if not inside:
        raise DataError(f"no token covers characters {start}:{end}")
    return inside[0], inside[-1] + 1


def _build(
    tokenizer: Any, kind: str, user: str, system: str | None, prefill: str | None
) -> tuple[Prompt, list[tuple[int, int]]]:
    text = render_chat(tokenizer, user, system, prefill)
    ids, offsets = _tokenize(tokenizer, text)
    if not ids:
        raise DataError("empty prompt")
    prompt = Prompt(kind=kind, text=text, input_ids=ids, user=user, prefill=prefill or "")  # type: ignore[arg-type]
    prompt.positions["last"] = len(ids) - 1
    if prefill:
        p_start, _ = char_span_to_tokens(offsets, len(text) - len(prefill), len(text))
        prompt.positions["prefill_start"] = p_start
    else:
        prompt.positions["prefill_start"] = len(ids)
    return prompt, offsets


def object_prompt(
    tokenizer: Any, question: str, spec: PromptSpec = PromptSpec(), *, task: str | None = None
) -> Prompt:
    """O(P): the object-level question as one user turn (+ optional prefill).

    The prefill is ``spec.object_prefill_for(task)``: the user's, else ``task``'s measured default
    (the generic ``"Answer:"`` without a task).
    """
    prompt, _ = _build(tokenizer, "object", question, spec.system, spec.object_prefill_for(task))
    return prompt


def hypothetical_text(
    question: str, prop: Property, spec: PromptSpec, task: str | None = None
) -> str:
    """The hypothetical user message H(P, property) for this spec's variant."""
    # The paper quotes P without the trailing newline its object prompt ends with.
    return VARIANTS[spec.variant].format(
        question=question.rstrip("\n"), property_question=prop.hypothetical_question(spec.person, task=task)
    )


def hypothetical_prompt(
    tokenizer: Any,
    question: str,
    prop: Property,
    spec: PromptSpec = PromptSpec(),
    *,
    task: str | None = None,
    release_text: str | None = None,
) -> Prompt:
    """H(P, property), with the quoted span of P located in tokens.

    ``release_text`` (the release file's hypothetical, verbatim) replaces the generated wording
    when ``spec.use_release_text`` and the variant is ``previously``.
    """
    if release_text and spec.use_release_text and spec.variant == "previously":
        user = release_text
    else:
        user = hypothetical_text(question, prop, spec, task)
    prompt, offsets = _build(tokenizer, "hypothetical", user, spec.system, spec.hypothetical_prefill)
    char_start = prompt.text.find(question.rstrip())
    if char_start < 0:
        raise DataError(f"the quoted question is not inside the hypothetical prompt: {user[:80]!r}")
    q_start, q_end = char_span_to_tokens(
        offsets, char_start, char_start + len(question.rstrip())
    )
    prompt.positions.update(quote_start=q_start, quote_end=q_end, quote_last=q_end - 1)
    return prompt


def label_separator(prefill: str | None) -> str:
    """Text between a prefill and a label: ``"Answer:" + " b"``; nothing after a newline/space."""
    if not prefill or prefill[-1] in " \n\t\"'(":
        return ""
    return " "


@dataclass(frozen=True)
class LabelTokens:
    """Token ids of each candidate label as it would continue a prompt.

    ``mode`` is ``"first_token"`` when every label's first token is distinct (one forward scores
    all labels), else ``"sequence"`` (each label's full continuation is scored).
    """

    labels: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    separator: str

    @property
    def first_ids(self) -> list[int]:
        return [ids[0] for ids in self.token_ids]

    @property
    def mode(self) -> Literal["first_token", "sequence"]:
        return "first_token" if len(set(self.first_ids)) == len(self.labels) else "sequence"


def label_tokens(tokenizer: Any, labels: list[str], context: str, prefill: str | None) -> LabelTokens:
    """Tokenise each label as a continuation of ``context`` (a full prompt text).

    The continuation is found by tokenising ``context + separator + label`` and removing the
    context's tokens; a tokenizer that merges across that boundary raises ``DataError``.
    """
    if not labels:
        raise DataError("empty label set")
    sep = label_separator(prefill)
    base, _ = _tokenize(tokenizer, context)
    out = []
    for label in labels:
        ids, _ = _tokenize(tokenizer, context + sep + label)
        if ids[: len(base)] != base or len(ids) == len(base):
            raise DataError(f"label {label!r} merges with the prompt's last token; change the prefill")
        out.append(tuple(ids[len(base) :]))
    return LabelTokens(labels=tuple(labels), token_ids=tuple(out), separator=sep)
