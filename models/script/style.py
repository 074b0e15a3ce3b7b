"""The run's visual guidelines as one sentence: the same words whichever writer wrote the script.

Every scene's video prompt ends with this sentence (the paper's mitigation for scenes that look
unrelated), so it must not depend on which writer ran.
"""

from __future__ import annotations

from soundsight.schemas import Analysis

__all__ = ["style_sentence"]


def style_sentence(analysis: Analysis) -> str:
    """The visual-guideline labels of `analysis` as one comma-separated sentence (no final period).

    Parameters
    ----------
    analysis : Analysis
        Any backend's labels; uses its ``visual`` categories and the track's ``mood``.

    Returns
    -------
    str
        E.g. ``"Exterior scene, natural setting, warm golden tones, focus on a single character,
        epic and heroic mood"``.
    """
    v = analysis.visual
    return (
        f"{v['location'].label.capitalize()} scene, {v['visual_setting'].label.lower()} setting, "
        f"{v['visual_style'].label.lower()}, focus on {v['visual_focus'].label.lower()}, "
        f"{analysis.track['mood'].label.lower()} mood"
    )
