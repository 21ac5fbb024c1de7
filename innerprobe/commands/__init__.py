"""CLI verbs of the later stages, one module each, each exposing ``register(app)``."""

from __future__ import annotations

import importlib
import logging

import typer

STAGES = ("capture", "probe", "patch", "finetune")
log = logging.getLogger(__name__)


def register_all(app: typer.Typer) -> None:
    for name in STAGES:
        try:
            module = importlib.import_module(f"innerprobe.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"innerprobe.commands.{name}":
                continue
            raise
        module.register(app)
