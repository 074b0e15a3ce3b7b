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
    """A model backend was selected but its weights are not on this machine.

    One sentence: what the user named, what is wrong with it, and the command that fixes it.

    Parameters
    ----------
    model_id : str
        The hub id or path the user named.
    hint : str, optional
        How to get it: a command (default: ``hf download <model_id>``), said after "download it
        first with:", unless `problem` is given.
    problem : str, optional
        What is wrong with `model_id` when it is not simply missing (e.g. "no such folder"); `hint`
        then follows as it is, e.g. "download one into it with: hf download ... --local-dir ...".
    """

    def __init__(self, model_id: str, hint: str = "", *, problem: str = ""):
        self.model_id = model_id
        how = hint or f"hf download {model_id}  (huggingface_hub < 1.0: huggingface-cli download {model_id})"
        if problem:
            message = f"model checkpoint {model_id}: {problem}; {how}"
        else:
            message = (
                f"model checkpoint '{model_id}' is not available locally; download it first with: {how} "
                f"(or point the setting at a local directory)"
            )
        super().__init__(message)
