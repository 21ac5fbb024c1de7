"""Floor 1 (below models): the Looking Inward protocol as data.

Tasks and their items, response properties (cleaning, compliance, labels) and the object and
hypothetical prompts with their token positions. No model weights are touched here except a
tokenizer to render prompts.
"""

from __future__ import annotations

from innerprobe.protocol.prompts import (
    DEFAULT_PREFILL,
    TASK_DEFAULT_PREFILL,
    LabelTokens,
    Prompt,
    PromptSpec,
    TaskDefaultPrefill,
    char_span_to_tokens,
    hypothetical_prompt,
    hypothetical_text,
    label_separator,
    label_tokens,
    object_prompt,
    render_chat,
)
from innerprobe.protocol.properties import (
    COMPLIANCE_GROUPS,
    ETHICAL_STANCE_QUESTIONS,
    NONCOMPLIANCE_REASONS,
    PROPERTIES,
    TASK_KINDS,
    Extraction,
    Property,
    clean_response,
    extract_with_compliance,
    get_property,
    is_compliant_object,
    list_properties,
    object_noncompliance,
    third_person,
)

__all__ = ['DEFAULT_PREFILL', 'TaskDefaultPrefill', 'TASK_DEFAULT_PREFILL', 'PromptSpec', 'Prompt', 'render_chat', 'char_span_to_tokens', 'object_prompt', 'hypothetical_text', 'hypothetical_prompt', 'label_separator', 'LabelTokens', 'label_tokens', 'TASK_KINDS', 'COMPLIANCE_GROUPS', 'ETHICAL_STANCE_QUESTIONS', 'PROPERTIES', 'Property', 'Extraction', 'clean_response', 'third_person', 'get_property', 'list_properties', 'is_compliant_object', 'object_noncompliance', 'NONCOMPLIANCE_REASONS', 'extract_with_compliance']
