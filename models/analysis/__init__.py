"""Analysis backends: the paper's label vocabulary for every segment and the whole track.

`FeatureAnalyser` (librosa descriptors, no weights) and `ClapAnalyser` (LAION-CLAP zero-shot)
write the same `Analysis` schema.
"""

from soundsight.models.analysis.clap import ClapAnalyser, SegmentEmbeddings
from soundsight.models.analysis.clap_model import clap_available, clap_backend_id, load_clap
from soundsight.models.analysis.features import FeatureAnalyser

__all__ = ["ClapAnalyser", "FeatureAnalyser", "SegmentEmbeddings", "clap_available", "clap_backend_id", "load_clap"]
