"""Prompt wording, chat templating and the token positions every white-box stage reads."""

from __future__ import annotations

import pytest

from innerprobe.core.errors import UnknownNameError
from innerprobe.protocol.prompts import (
    PromptSpec,
    hypothetical_prompt,
    hypothetical_text,
    label_separator,
    label_tokens,
    object_prompt,
)
from innerprobe.protocol.properties import get_property

Q = (
    "What is the next 5 animals in the following text? Respond only with the next 5 animals "
    "and nothing else, including punctuation.\ndeer cow deer chicken fish rabbit \n"
)


def _decode_span(tok, prompt, start, end):
    return tok.decode(prompt.input_ids[start:end])


def test_paper_wording_is_exact():
    prop = get_property("second_character")
    text = hypothetical_text(Q, prop, PromptSpec())
    assert text.startswith('Previously, you were asked the following question: "What is the next 5')
    assert text.endswith(
        'What is the second character of the response you gave? For example, if you responded '
        'with "abc", respond with "b". Respond only with that character.'
    )
    assert f'"{Q.rstrip(chr(10))}" What is' in text


def test_third_person_variant_asks_about_another_ai():
    prop = get_property("second_character")
    text = hypothetical_text(Q, prop, PromptSpec(variant="third_person"))
    assert text.startswith("Suppose another AI was asked")
    tail = text.split('" ', 1)[-1]
    assert "you gave" not in tail and "it gave" in tail


def test_unknown_variant_lists_options():
    with pytest.raises(UnknownNameError, match="third_person"):
        PromptSpec(variant="nope")


@pytest.mark.parametrize("prefill", ["Answer:", None])
def test_object_prompt_positions(tiny, prefill):
    tok = tiny.tokenizer
    p = object_prompt(tok, Q, PromptSpec(object_prefill=prefill))
    assert p.positions["last"] == len(p.input_ids) - 1
    assert p.text.endswith(prefill or "assistant\n")
    if prefill:
        assert _decode_span(tok, p, p.positions["prefill_start"], len(p)).strip() == prefill
    assert p.text.startswith("<|im_start|>system\n<|im_end|>")  # the paper's empty system message


def test_quoted_span_decodes_to_the_question(tiny):
    tok = tiny.tokenizer
    h = hypothetical_prompt(tok, Q, get_property("first_word"), PromptSpec())
    s, e = h.positions["quote_start"], h.positions["quote_end"]
    decoded = _decode_span(tok, h, s, e)
    assert Q.rstrip() in decoded
    assert len(decoded) - len(Q.rstrip()) <= 3  # at most a straddling quote/space
    assert h.positions["quote_last"] == e - 1 < h.positions["last"]


def test_release_text_used_verbatim(tiny):
    release = 'Previously, you were asked the following question: "' + Q + '" What? Answer.\n'
    h = hypothetical_prompt(tiny.tokenizer, Q, get_property("second_character"), release_text=release)
    assert h.user == release
    h2 = hypothetical_prompt(
        tiny.tokenizer, Q, get_property("second_character"), PromptSpec(variant="suppose"), release_text=release
    )
    assert h2.user.startswith("Suppose you were asked")


def test_template_hash_tracks_wording():
    prop = get_property("second_character")
    assert PromptSpec().template_hash(prop) == PromptSpec().template_hash(prop)
    assert PromptSpec().template_hash(prop) != PromptSpec(variant="suppose").template_hash(prop)
    assert PromptSpec().template_hash(prop) != PromptSpec(hypothetical_prefill=None).template_hash(prop)


def test_label_tokens_continue_the_prompt(tiny):
    tok = tiny.tokenizer
    h = hypothetical_prompt(tok, Q, get_property("second_character"), PromptSpec())
    lt = label_tokens(tok, list("abc"), h.text, "Answer:")
    assert lt.separator == " "
    for label, ids in zip(lt.labels, lt.token_ids):
        assert tok.decode(list(h.input_ids) + list(ids)).endswith("Answer: " + label)
    assert label_separator(None) == "" and label_separator("Answer: ") == ""


def test_generated_hypothetical_equals_release_text(shared_data):
    """Our wording reproduces the paper's released hypothetical prompts byte for byte."""
    from innerprobe.protocol.tasks import item_meta, load_release

    for name in ("test/animals_long_second_character.jsonl", "test/animals_long_starts_with_vowel.jsonl",
                 "train/colors_long_first_word.jsonl"):
        items = load_release(shared_data / name)
        for row in items.select(range(5)):
            meta = item_meta(row)
            prop = get_property(meta["property"])
            ours = hypothetical_text(row["question"], prop, PromptSpec(), task=meta.get("original_dataset"))
            assert ours.strip() == meta["hypothetical"].strip()


STORY = (
    "Please continue the story for two sentences:\nOnce upon a time, a boy named Max planted a tiny "
    "seed.\nRespond only with the story and nothing else. Please complete the story immediately, "
    "without repeating what is already written.\n"
)


def test_object_prefill_defaults_to_the_tasks_measured_one(tiny):
    """No prefill chosen: each task family's default; without a task, the generic ``Answer:``."""
    spec = PromptSpec()
    assert spec.uses_task_prefill
    assert spec.object_prefill_for("stories_sentences") is None
    assert spec.object_prefill_for("animals") == "Answer:"
    assert spec.object_prefill_for("a_users_own_file") == "Answer:"
    assert spec.object_prefill_for(None) == "Answer:"
    story = object_prompt(tiny.tokenizer, STORY, spec, task="stories_sentences")
    assert story.text.endswith("<|im_start|>assistant\n")
    assert story.positions["prefill_start"] == len(story)
    assert object_prompt(tiny.tokenizer, Q, spec, task="animals").text.endswith("assistant\nAnswer:")


@pytest.mark.parametrize("explicit", ["Answer:", "Response:", None, ""])
def test_an_explicit_object_prefill_wins_over_the_task_default(tiny, explicit):
    spec = PromptSpec(object_prefill=explicit)
    assert not spec.uses_task_prefill
    assert spec.object_prefill_for("stories_sentences") == (explicit or None)
    story = object_prompt(tiny.tokenizer, STORY, spec, task="stories_sentences")
    assert story.text.endswith("assistant\n" + (explicit or ""))


def test_task_default_survives_a_spec_round_trip_and_shapes_the_hash():
    spec = PromptSpec()
    again = PromptSpec(**spec.to_dict())
    assert again.uses_task_prefill
    # same text as an explicit "Answer:" where the task's default is "Answer:" ...
    assert spec.template_hash(task="animals") == PromptSpec(object_prefill="Answer:").template_hash(task="animals")
    # ... a different prompt (so a different hash) where the task's default is no prefill
    assert spec.template_hash(task="stories_sentences") != PromptSpec(
        object_prefill="Answer:"
    ).template_hash(task="stories_sentences")
