"""Audio algorithms of the load and segment stages: decoding, beats, cuts. Times are seconds."""

from soundsight.models.audio.beats import track_beats
from soundsight.models.audio.beats.confidence import is_credible
from soundsight.models.audio.beats.structure import spectral_novelty
from soundsight.models.audio.decode import check_not_truncated, decode_audio
from soundsight.models.audio.joint import plan_joint
from soundsight.models.audio.segmenters import BeatSnap, plan_segments, segment_random, segment_rule_based
from soundsight.models.audio.tiling import Cuts
from soundsight.models.base import BeatGrid

__all__ = [
    "BeatGrid",
    "BeatSnap",
    "Cuts",
    "check_not_truncated",
    "decode_audio",
    "is_credible",
    "plan_joint",
    "plan_segments",
    "segment_random",
    "segment_rule_based",
    "spectral_novelty",
    "track_beats",
]
