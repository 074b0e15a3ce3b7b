"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class SoundsightError(Exception):
    """An error with a message meant for the user, not a stack trace."""


class InputError(SoundsightError):
    """The song (or another input file) cannot be used; the message names the file."""

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class MissingCheckpointError(SoundsightError):
    """A model backend was selected but its weights are not on this machine."""

    def __init__(self, model_id: str, hint: str = ""):
        self.model_id = model_id
        how = hint or f"hf download {model_id}  (huggingface_hub < 1.0: huggingface-cli download {model_id})"
        super().__init__(
            f"model checkpoint '{model_id}' is not available locally; download it first with: {how} "
            f"(or point the setting at a local directory)"
        )
