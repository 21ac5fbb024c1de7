"""The README's interop snippet runs as written, with the tiny model as "your bridge"."""

from __future__ import annotations

import re
from pathlib import Path

from innerprobe.protocol.tasks import load_items

README = Path(__file__).resolve().parents[1] / "README.md"


def _interop_block() -> str:
    text = README.read_text()
    section = text.split("## Interop", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Interop section holds one python block"
    return blocks[0]


def test_readme_interop_snippet_runs_on_a_bridge_and_questions_of_your_own(tiny, tmp_path):
    questions = list(load_items("animals", n=12, split="train")["question"])
    ns = {"my_bridge": tiny.bridge, "my_tokenizer": tiny.tokenizer, "my_questions": questions,
          "out_dir": tmp_path / "acts"}
    exec(compile(_interop_block(), "README.md#interop", "exec"), ns)  # noqa: S102 - the README's own code
    assert ns["store"].n_items == 12
    assert not ns["probes"].table.empty
    assert ns["log"].touched(0, 1, ns["model"].tokenizer("Tell me about dogs").input_ids)
    assert ns["logits"].shape[-1] == tiny.bridge.cfg.d_vocab
