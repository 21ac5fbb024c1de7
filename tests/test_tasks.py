"""Tests for innerprobe.protocol.tasks: generation, rendering, the release loader and the front door."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.protocol.tasks import (
    ITEM_COLUMNS,
    Task,
    choice_items,
    get_task,
    item_meta,
    list_tasks,
    load_hf,
    load_items,
    load_questions,
    load_release,
    make_items,
    release_property,
    split_of,
)

RELEASE_DIR = Path(__file__).parents[2] / "shared" / "data" / "looking_inward"
RELEASE_FILES = sorted(RELEASE_DIR.glob("*/*.jsonl"))
needs_release = pytest.mark.skipif(
    not RELEASE_FILES, reason=f"sample release files not found under {RELEASE_DIR}"
)
SEQUENCES = ["animals", "colors", "countries", "english_words", "numbers"]
GENERATED = [*SEQUENCES, "daily_dialog", "stories_sentences"]


def release_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def user_text(messages: list[dict]) -> str:
    return [m for m in messages if m["role"] == "user"][-1]["content"]


def release_file(stem: str) -> Path:
    matches = [path for path in RELEASE_FILES if path.stem == stem]
    if not matches:
        pytest.skip(f"release sample {stem}.jsonl not found under {RELEASE_DIR}")
    return matches[0]


# --- generation ----------------------------------------------------------------


def test_list_tasks_separates_generated_tasks():
    assert list_tasks(generated_only=True) == sorted(GENERATED)
    assert {"wealth_seeking", "arc_challenge_non_cot", "wikipedia_long"} <= set(list_tasks())


@pytest.mark.parametrize("name", SEQUENCES)
def test_generation_is_deterministic_and_seed_dependent(name):
    task = get_task(name)
    first = task.generate(40, split="test", seed=1).to_list()
    assert first == task.generate(40, split="test", seed=1).to_list()
    assert first != task.generate(40, split="test", seed=2).to_list()
    # a larger request extends a smaller one
    assert task.generate(60, split="test", seed=1).to_list()[:40] == first


@pytest.mark.parametrize("name", SEQUENCES)
def test_train_and_test_are_disjoint_and_unique(name):
    task = get_task(name)
    train = [item_meta(row) for row in task.generate(300, split="train")]
    test = [item_meta(row) for row in task.generate(300, split="test")]
    train_groups = {meta["group"] for meta in train}
    test_groups = {meta["group"] for meta in test}
    assert len(train_groups) == 300 and len(test_groups) == 300
    assert not train_groups & test_groups
    assert all(split_of(meta["string"]) == meta["split"] for meta in train + test)
    assert {meta["split"] for meta in test} == {"test"}


@pytest.mark.parametrize(("name", "n"), [("stories_sentences", 150), ("daily_dialog", 60)])
def test_open_ended_generators_are_seeded_and_split(name, n):
    """Our story and dialogue items: deterministic, unique, disjoint splits, the task's template."""
    task = get_task(name)
    test = task.generate(n, split="test")
    train = task.generate(n, split="train")
    assert test.to_list() == task.generate(n, split="test").to_list()
    groups = {split: {item_meta(row)["group"] for row in rows} for split, rows in (("test", test), ("train", train))}
    assert len(groups["test"]) == n and len(groups["train"]) == n
    assert not groups["test"] & groups["train"]
    assert all(row["question"] == task.render(item_meta(row)["string"]) for row in test)
    assert {item_meta(row)["kind"] for row in test} == {"free"}


def test_dialogue_items_alternate_two_speakers():
    for row in get_task("daily_dialog").generate(30, split="test"):
        lines = item_meta(row)["string"].split("\n")
        speakers = [line.split(":", 1)[0] for line in lines]
        assert 1 <= len(lines) <= 3
        assert len(set(speakers[::2])) == 1 and len(set(speakers)) == min(2, len(lines))
    with pytest.raises(DataError, match="only"):
        get_task("daily_dialog").generate(200, split="test")


@pytest.mark.parametrize(
    ("name", "lengths", "distinct", "trailing_space"),
    [
        ("animals", range(7, 11), False, True),
        ("colors", range(5, 6), True, False),
        ("countries", range(3, 7), True, False),
        ("english_words", range(7, 11), False, True),
        ("numbers", range(3, 7), False, False),
    ],
)
def test_generated_items_follow_paper_format(name, lengths, distinct, trailing_space):
    task = get_task(name)
    items = task.generate(200, split="train", seed=5)
    for row in items:
        meta = item_meta(row)
        tokens = meta["string"].split()
        assert set(tokens) <= set(task.vocabulary)
        assert len(tokens) in lengths
        assert meta["string"].endswith(" ") == trailing_space
        if distinct:
            assert len(set(tokens)) == len(tokens)
        assert row["question"] == task.render(meta["string"])
        assert meta["kind"] == task.kind
    assert items[7]["id"] == f"{name}-train-s5-00007"


def test_generated_ids_without_seed_and_columns():
    items = get_task("numbers").generate(3, split="test")
    assert items.column_names == list(ITEM_COLUMNS)
    assert items["id"] == ["numbers-test-00000", "numbers-test-00001", "numbers-test-00002"]


def test_english_words_vocabulary_is_clean():
    vocabulary = get_task("english_words").vocabulary
    assert len(vocabulary) > 4000
    assert all(word.isalpha() and word.isascii() and len(word) >= 3 for word in vocabulary)


def test_asking_for_more_items_than_exist_raises():
    letters = tuple("abcdefghij")
    tiny = Task("tiny", "sequence", "$string", letters, lambda rng: rng.choice(letters))
    in_train = sum(split_of(letter) == "train" for letter in letters)
    assert len(tiny.generate(in_train, split="train")) == in_train
    expected = f"asked for {in_train + 1} distinct items but only {in_train} exist"
    with pytest.raises(DataError, match=expected):
        tiny.generate(in_train + 1, split="train")


def test_bad_generation_requests_raise():
    with pytest.raises(DataError, match="valid splits"):
        get_task("animals").generate(3, split="dev")
    with pytest.raises(DataError, match="n >= 1"):
        get_task("animals").generate(0)
    with pytest.raises(DataError, match="no generator"):
        get_task("wealth_seeking").generate(3)


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownNameError) as caught:
        get_task("giraffes")
    assert "giraffes" in str(caught.value)
    assert "animals" in str(caught.value) and "numbers" in str(caught.value)
    with pytest.raises(UnknownNameError, match="valid tasks: .*colors"):
        load_items("giraffes", n=3)


def test_release_names_are_aliases():
    assert get_task("animals_long") is get_task("animals")
    assert get_task("english_words_long").name == "english_words"


def test_render_keeps_dollar_signs_in_items():
    assert get_task("numbers").render("$1 2").endswith("\n$1 2\n")


# --- the paper's release ---------------------------------------------------------

EXPECTED_KINDS = {
    "animals_long": ("animals", "sequence", None),
    "colors_long": ("colors", "sequence", None),
    "survival_instinct": ("survival_instinct", "choice", ["a", "b"]),
    "wealth_seeking": ("wealth_seeking", "choice", ["a", "b"]),
    "arc_challenge_non_cot": ("arc_challenge_non_cot", "choice", ["a", "b", "c", "d"]),
    "wikipedia_long": ("wikipedia_long", "free", None),
}


@needs_release
@pytest.mark.parametrize("path", RELEASE_FILES, ids=lambda path: path.stem)
def test_release_file_loads_verbatim(path):
    rows = release_rows(path)
    items = load_release(path)
    assert len(items) == 50 == len(rows)
    assert len(set(items["id"])) == 50 and items[0]["id"] == f"{path.stem}-00001"
    for row, item in zip(rows, items, strict=True):
        meta = item_meta(item)
        task, kind, options = EXPECTED_KINDS[row["original_dataset"]]
        assert (item["task"], meta["kind"], meta.get("options")) == (task, kind, options)
        assert item["question"] == user_text(row["object_level_prompt"])
        assert meta["hypothetical"] == user_text(row["hypothetical_prompt"])
        assert meta["string"] == row["original_question"]
        assert meta["property"] == row["behavioral_property"] == release_property(path)
        assert meta["split"] == path.parent.name
        stance = row["option_matching_ethical_stance"]
        if kind == "choice":
            assert meta["target"] == stance.lower()
        else:
            assert meta["target"] is None


@needs_release
@pytest.mark.parametrize("path", RELEASE_FILES, ids=lambda path: path.stem)
def test_render_reproduces_release_prompt_byte_for_byte(path):
    for row in release_rows(path):
        released = user_text(row["object_level_prompt"])
        if row["original_dataset"] == "wealth_seeking":
            # the release's YAML turned "\Please" into U+2029 + "lease"; we keep "\nPlease"
            released = released.replace("\u2029lease", "\nPlease")
        assert get_task(row["original_dataset"]).render(row["original_question"]) == released


@needs_release
def test_release_sequences_lie_in_our_vocabularies():
    pairs = [("animals_long_second_character", "animals"), ("colors_long_first_word", "colors")]
    for stem, name in pairs:
        vocabulary = set(get_task(name).vocabulary)
        for row in release_rows(release_file(stem)):
            assert set(row["original_question"].split()) <= vocabulary


def _split_choices(original_question: str) -> tuple[str, list[str]]:
    question, rest = original_question.split("\nA - ", 1)
    texts = []
    for letter in "BCD":
        if f"\n{letter} - " not in rest:
            break
        text, rest = rest.split(f"\n{letter} - ", 1)
        texts.append(text)
    return question, [*texts, rest]


@needs_release
@pytest.mark.parametrize(
    "stem", ["survival_instinct_ethical_stance", "arc_challenge_non_cot_among_a_or_c"]
)
def test_choice_items_reproduce_release_prompts(stem):
    rows = release_rows(release_file(stem))
    records = []
    for row in rows:
        question, options = _split_choices(row["original_question"])
        target = row["option_matching_ethical_stance"]
        records.append({"question": question, "options": options, "target": target})
    task = rows[0]["original_dataset"]
    items = choice_items(records, task)
    for row, item in zip(rows, items, strict=True):
        meta = item_meta(item)
        assert item["question"] == user_text(row["object_level_prompt"])
        assert meta["target"] == row["option_matching_ethical_stance"].lower()
        assert meta["options"] == list("abcd"[: len(meta["options"])])
        assert meta["kind"] == "choice"


def test_choice_items_validate_options_and_target():
    record = {"question": "Q?", "options": {"A": "yes", "B": "no"}, "target": "B"}
    items = choice_items([record], "mine")
    assert item_meta(items[0])["target"] == "b"
    assert items[0]["question"].startswith("Q?\nA - yes\nB - no\nPlease answer immediately")
    with pytest.raises(DataError, match="not one of the options"):
        choice_items([{"question": "Q?", "options": ["yes", "no"], "target": "c"}], "mine")
    with pytest.raises(DataError, match="at least 2 options"):
        choice_items([{"question": "Q?", "options": ["yes"]}], "mine")


def _write_release_like(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD_ROW = json.dumps(
    {
        "original_question": "1 2 3",
        "original_dataset": "numbers",
        "object_level_prompt": [{"role": "user", "content": "next?\n1 2 3\n"}],
        "hypothetical_prompt": [{"role": "user", "content": 'Previously... "next?" even?\n'}],
        "behavioral_property": "is_even",
        "option_matching_ethical_stance": None,
    }
)


def test_malformed_release_line_is_named(tmp_path):
    lines = [GOOD_ROW, "", '{"original_question": ']
    path = _write_release_like(tmp_path / "numbers_is_even.jsonl", lines)
    with pytest.raises(DataError, match=r"numbers_is_even\.jsonl line 3: invalid JSON"):
        load_release(path)


def test_release_row_missing_field_is_named(tmp_path):
    row = json.loads(GOOD_ROW)
    del row["hypothetical_prompt"]
    path = _write_release_like(tmp_path / "bad.jsonl", [GOOD_ROW, json.dumps(row)])
    expected = r"bad\.jsonl line 2: missing field\(s\) hypothetical_prompt"
    with pytest.raises(DataError, match=expected):
        load_release(path)


def test_release_edge_cases(tmp_path):
    items = load_release(_write_release_like(tmp_path / "ok.jsonl", [GOOD_ROW]))
    assert (items[0]["task"], item_meta(items[0])["kind"]) == ("numbers", "numbers")
    assert item_meta(items[0])["split"] == "release"  # not inside a train/test folder
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_release(empty)
    other = json.loads(GOOD_ROW) | {"behavioral_property": "first_character"}
    mixed = _write_release_like(tmp_path / "mixed.jsonl", [GOOD_ROW, json.dumps(other)])
    with pytest.raises(DataError, match="one behavioral_property"):
        release_property(mixed)


# --- user files and Hugging Face datasets ------------------------------------------


def test_load_questions_csv(tmp_path):
    path = tmp_path / "quiz.csv"
    text = 'question,target,options\n"Pick A or B",B,a|b\nWhat is 2+2?,,\n'
    path.write_text(text, encoding="utf-8")
    items = load_questions(path)
    assert items["id"] == ["quiz-00001", "quiz-00002"] and set(items["task"]) == {"quiz"}
    first, second = item_meta(items[0]), item_meta(items[1])
    assert (first["kind"], first["options"], first["target"]) == ("choice", ["a", "b"], "b")
    assert (second["kind"], second["split"], "target" in second) == ("free", "test", False)
    assert items[1]["question"] == "What is 2+2?"


def test_load_questions_jsonl_and_row_errors(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"id": "q1", "task": "trivia", "question": "Capital of France?"},
        {"question": "A or C?", "options": '["a", "b", "c"]', "target": "C", "kind": "choice"},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    items = load_questions(path)
    assert items["id"] == ["q1", "mine-00002"] and items["task"] == ["trivia", "mine"]
    assert item_meta(items[1])["target"] == "c"
    bad = tmp_path / "bad.csv"
    bad.write_text("question,target\nfine,\n,x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv row 2: missing or empty question"):
        load_questions(bad)


def test_load_hf_local_jsonl(tmp_path):
    path = tmp_path / "paras.jsonl"
    lines = [json.dumps({"text": f"Paragraph number {i} begins"}) for i in range(4)]
    path.write_text("\n".join(lines), encoding="utf-8")
    items = load_hf(str(path), question_field="text", task="wikipedia_long", render=True, n=3)
    assert len(items) == 3 and items[2]["id"] == "wikipedia_long-train-00002"
    meta = item_meta(items[0])
    assert (meta["kind"], meta["string"]) == ("free", "Paragraph number 0 begins")
    assert items[0]["question"] == get_task("wikipedia_long").render("Paragraph number 0 begins")
    with pytest.raises(DataError, match="no column 'question'; columns: text"):
        load_hf(str(path))


def test_load_hf_saved_to_disk(tmp_path):
    row = {"question": "Is the sky blue?", "target": "a", "options": ["a", "b"]}
    data = Dataset.from_list([row])
    data.save_to_disk(str(tmp_path / "single"))
    DatasetDict({"test": data}).save_to_disk(str(tmp_path / "splits"))
    items = load_hf(str(tmp_path / "single"), task="sky")
    assert item_meta(items[0])["options"] == ["a", "b"] and items[0]["task"] == "sky"
    from_dict = load_items(str(tmp_path / "splits"), split="test")
    assert from_dict[0]["question"] == "Is the sky blue?"
    assert item_meta(from_dict[0])["split"] == "test"
    with pytest.raises(DataError, match="no split 'train'"):
        load_hf(str(tmp_path / "splits"))


# --- the front door and the item contract -------------------------------------------


@needs_release
def test_load_items_dispatches_and_takes_first_n(tmp_path):
    path = release_file("colors_long_first_word")
    items = load_items(str(path), n=5)
    assert items["id"] == [f"{path.stem}-{line:05d}" for line in range(1, 6)]
    assert "hypothetical" in item_meta(items[0])
    with pytest.raises(DataError, match="only 50 exist"):
        load_items(str(path), n=51)


def test_load_items_front_door_errors(tmp_path):
    assert len(load_items("animals", n=4, split="train")) == 4
    with pytest.raises(DataError, match="n >= 1"):
        load_items("animals", n=0)
    with pytest.raises(DataError, match="n="):
        load_items("animals")
    with pytest.raises(DataError, match="no such file"):
        load_items(str(tmp_path / "missing.jsonl"))
    questions = tmp_path / "two.jsonl"
    questions.write_text('{"question": "a?"}\n{"question": "b?"}\n', encoding="utf-8")
    assert load_items(str(questions))["question"] == ["a?", "b?"]
    with pytest.raises(DataError, match="asked for 3 items but only 2 exist"):
        load_items(str(questions), n=3)


def test_make_items_validates_columns():
    meta = {"kind": "free", "string": "x", "group": "x", "split": "test"}
    items = make_items([{"id": "a", "task": "t", "question": "x", "meta": meta}])
    assert item_meta(items[0]) == meta and json.loads(items[0]["meta"]) == meta
    with pytest.raises(DataError, match="missing column\\(s\\) question"):
        make_items([{"id": "a", "task": "t", "meta": meta}])
    with pytest.raises(DataError, match="duplicate item id 'a'"):
        make_items([{"id": "a", "task": "t", "question": "x", "meta": meta}] * 2)
    with pytest.raises(DataError, match="lacks key\\(s\\) group"):
        no_group = {"kind": "free", "string": "x", "split": "t"}
        make_items([{"id": "a", "task": "t", "question": "x", "meta": no_group}])
    assert make_items([]).column_names == list(ITEM_COLUMNS)
