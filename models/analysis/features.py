"""The embedded analysis backend: librosa descriptors mapped onto the paper's label vocabulary.

It needs no weights. Each category's options get a heuristic score from musically meaningful
descriptors (loudness in dBFS, onset density in onsets/s, spectral centroid in Hz, percussive
energy share, beat regularity, major/minor key fit); a softmax turns scores into the same
top-label / score / distribution that the CLAP backend reports, so `analysis.json` has one
schema whatever produced it.
"""

from __future__ import annotations

import numpy as np

from soundsight.prompts import Category, Vocabulary, load_vocabulary
from soundsight.schemas import Analysis, Label, Segment, SegmentLabels
from soundsight.settings import AnalysisSettings

__all__ = ["BACKEND", "FeatureAnalyser", "label_from_scores"]

BACKEND_ID = "librosa-features-v1"
HOP = 512
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _bump(x: float, centre: float, width: float) -> float:
    return float(np.exp(-0.5 * ((x - centre) / width) ** 2))


def label_from_scores(category: Category, scores: dict[str, float], temperature: float = 0.15) -> Label:
    """A softmax over heuristic scores, matched to `category`'s options by name.

    Parameters
    ----------
    category : Category
        From the vocabulary.
    scores : dict
        Option sentence -> score; must name exactly the category's options, so a vocabulary edit
        (a renamed, added or reordered option) fails loudly instead of mislabelling.
    temperature : float
        Softmax temperature in score units.

    Raises
    ------
    ValueError
        `scores` does not name exactly the category's options.
    """
    if set(scores) != set(category.options):
        unknown = sorted(set(scores) - set(category.options))
        unscored = sorted(set(category.options) - set(scores))
        raise ValueError(
            f"feature scores for {category.key!r} do not match prompts/vocabulary.toml: "
            f"unknown options {unknown}, options without a score {unscored}"
        )
    values = np.array([float(scores[o]) for o in category.options], dtype=float)
    p = np.exp((values - values.max()) / temperature)
    p /= p.sum()
    return Label.from_distribution(category.key, category.name, category.options, p)


class FeatureAnalyser:
    """Labels segments and the whole track from librosa descriptors."""

    name = "features"
    backend_id = BACKEND_ID

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary

    def __call__(
        self, y: np.ndarray, sr: int, segments: list[Segment], tempo_bpm: float, beats: list[float]
    ) -> Analysis:
        """Labels for `segments` of the mono song `y` (float32 at `sr` Hz); `beats` in seconds."""
        import librosa  # here, not at module level: cached runs never pay its ~1 s import

        # 1. Shared spectral analysis, once for the whole song.
        stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=HOP))
        # Harmonic/percussive split on a 128-band mel spectrogram: 8x fewer rows than the STFT's
        # 1025 bins make the median filters 8x cheaper, and a share of energy needs no finer bands.
        mel = librosa.feature.melspectrogram(S=stft**2, sr=sr, n_mels=128)
        harmonic, percussive = librosa.decompose.hpss(mel, kernel_size=17)
        rms = librosa.feature.rms(S=stft, frame_length=2048)[0]
        rms_db = librosa.amplitude_to_db(rms, ref=1.0)
        centroid = librosa.feature.spectral_centroid(S=stft, sr=sr)[0]
        flatness = librosa.feature.spectral_flatness(S=stft)[0]
        rolloff = librosa.feature.spectral_rolloff(S=stft, sr=sr, roll_percent=0.95)[0]
        freqs = librosa.fft_frequencies(sr=sr, n_fft=2048)
        low_energy = (stft[freqs < 200.0] ** 2).sum(axis=0)
        total_energy = (stft**2).sum(axis=0) + 1e-12
        perc_share = percussive.sum(axis=0) / (harmonic.sum(axis=0) + percussive.sum(axis=0) + 1e-12)
        onset_env = librosa.onset.onset_strength(S=librosa.amplitude_to_db(stft), sr=sr)
        onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=HOP, units="time")
        chroma = librosa.feature.chroma_stft(S=stft**2, sr=sr)
        times = librosa.frames_to_time(np.arange(stft.shape[1]), sr=sr, hop_length=HOP)
        beats_arr = np.asarray(beats, dtype=float)

        # 2. Descriptors per segment.
        seg_desc = []
        for seg in segments:
            m = (times >= seg.start) & (times < seg.end)
            if not m.any():
                m = np.abs(times - seg.start) == np.abs(times - seg.start).min()
            env = rms_db[m]
            x = np.linspace(0.0, 1.0, len(env))
            slope = float(np.polyfit(x, env, 1)[0]) if len(env) > 2 else 0.0
            smooth = np.convolve(env, np.ones(9) / 9, mode="same") if len(env) > 9 else env
            detrended = smooth - np.polyval(np.polyfit(x, smooth, 1), x) if len(env) > 2 else smooth
            sb = beats_arr[(beats_arr >= seg.start) & (beats_arr < seg.end)]
            ibi = np.diff(sb)
            tail = env[-max(1, len(env) // 8) :]
            seg_desc.append(
                {
                    "loudness_db": float(np.mean(env)),
                    "loudness_std_db": float(np.std(detrended)),
                    "slope_db": slope,
                    "fluctuations": float(np.sum(np.diff(np.sign(detrended - 0.0)) != 0) / max(seg.duration, 1e-3)),
                    "tail_drop_db": float(np.mean(env) - np.mean(tail)),
                    "onsets_per_s": float(np.sum((onsets >= seg.start) & (onsets < seg.end)) / max(seg.duration, 1e-3)),
                    "centroid_hz": float(np.mean(centroid[m])),
                    "flatness": float(np.mean(flatness[m])),
                    "percussive_share": float(np.mean(perc_share[m])),
                    "low_share": float(np.sum(low_energy[m]) / np.sum(total_energy[m])),
                    "beat_regularity": float(1.0 - min(1.0, np.std(ibi) / (np.mean(ibi) + 1e-9)))
                    if len(ibi) > 2
                    else 0.0,
                    "pulse": float(np.mean(onset_env[m]) / (np.mean(onset_env) + 1e-9)),
                }
            )

        # 3. Whole-track descriptors.
        profile = chroma.mean(axis=1)
        major = max(np.corrcoef(np.roll(_MAJOR, k), profile)[0, 1] for k in range(12))
        minor = max(np.corrcoef(np.roll(_MINOR, k), profile)[0, 1] for k in range(12))
        seg_loud = np.array([d["loudness_db"] for d in seg_desc])
        track = {
            "tempo_bpm": float(tempo_bpm),
            "loudness_db": float(np.mean(rms_db)),
            "loudness_spread_db": float(np.std(seg_loud)),
            "loudness_trend_db": float(np.polyfit(np.linspace(0, 1, len(seg_loud)), seg_loud, 1)[0])
            if len(seg_loud) > 1
            else 0.0,
            "centroid_hz": float(np.mean(centroid)),
            "flatness": float(np.mean(flatness)),
            "percussive_share": float(np.mean(perc_share)),
            "low_share": float(np.sum(low_energy) / np.sum(total_energy)),
            "rolloff_hz": float(np.median(rolloff)),
            "crest_db": float(20 * np.log10((np.abs(y).max() + 1e-9) / (np.sqrt(np.mean(y**2)) + 1e-9))),
            "onsets_per_s": float(len(onsets) / (len(y) / sr)),
            "major_minus_minor": float(major - minor),
        }

        # 4. Map descriptors onto the vocabulary.
        v = self.vocabulary
        seg_labels = []
        for i, d in enumerate(seg_desc):
            prev_l = seg_desc[i - 1]["loudness_db"] if i > 0 else None
            next_l = seg_desc[i + 1]["loudness_db"] if i + 1 < len(seg_desc) else None
            labels = {
                "instrumental_intensity": self._intensity(v["instrumental_intensity"], d),
                "prominent_element": self._element(v["prominent_element"], d),
                "dynamic_shift": self._dynamics(v["dynamic_shift"], d),
                "rhythm": self._rhythm(v["rhythm"], d),
                "transition_function": self._transition(v["transition_function"], d, prev_l, next_l),
            }
            seg_labels.append(SegmentLabels(index=i, labels=labels))
        track_labels = {
            "instrumental_energy": self._energy(v["instrumental_energy"], track),
            "instrumental_palette": self._palette(v["instrumental_palette"], track),
            "tempo_range": self._tempo(v["tempo_range"], track),
            "production_quality": self._production(v["production_quality"], track),
            "mood": self._mood(v["mood"], track),
        }
        visual = self._visual(track_labels, track)
        return Analysis(
            backend=self.name,
            backend_id=self.backend_id,
            vocabulary_hash=v.content_hash,
            track=track_labels,
            visual=visual,
            segments=seg_labels,
            descriptors={k: round(val, 4) for k, val in track.items()},
            segment_descriptors=[{k: round(val, 4) for k, val in d.items()} for d in seg_desc],
        )

    # Each mapper scores the options of one category by name (`label_from_scores` checks them
    # against vocabulary.toml).
    @staticmethod
    def _intensity(c: Category, d: dict) -> Label:
        level = np.clip((d["loudness_db"] + 40.0) / 30.0, 0, 1) * 0.7 + np.clip(d["onsets_per_s"] / 6.0, 0, 1) * 0.3
        return label_from_scores(
            c,
            {
                "Low intensity, sparse and quiet": _bump(level, 0.1, 0.15),
                "Soft and restrained with a gentle pulse": _bump(level, 0.35, 0.15),
                "Moderate intensity with a clear beat": _bump(level, 0.6, 0.15),
                "High energy and full instrumentation": _bump(level, 0.9, 0.15),
            },
        )

    @staticmethod
    def _element(c: Category, d: dict) -> Label:
        cen, perc, low, flat = d["centroid_hz"], d["percussive_share"], d["low_share"], d["flatness"]
        harmonic = 1.0 - perc
        return label_from_scores(
            c,
            {
                "Drums or percussion": perc * 1.2,
                "Bass or low-end": low * 2.0,
                "Guitars": harmonic * _bump(cen, 2200, 700) * (1 + flat * 5),
                "Piano or keys": harmonic * _bump(cen, 1300, 500) * (d["pulse"] > 1.0),
                "String or orchestral elements": harmonic * _bump(cen, 1600, 700) * (d["onsets_per_s"] < 3),
                "Synths or electronic sounds": _bump(flat, 0.08, 0.05) * (0.5 + perc),
                "Wind or brass instruments": harmonic * _bump(cen, 2600, 600) * (d["onsets_per_s"] < 4),
                "Vocals": harmonic * _bump(cen, 1900, 400) * 0.6,
            },
        )

    @staticmethod
    def _dynamics(c: Category, d: dict) -> Label:
        quiet = d["loudness_db"] < -28
        slope, fluct, spread = d["slope_db"], d["fluctuations"], d["loudness_std_db"]
        steady = _bump(spread, 0.0, 2.5)
        return label_from_scores(
            c,
            {
                "It stays uniformly quiet": steady * quiet,
                "It stays uniformly loud/energetic": steady * (not quiet),
                "It gradually builds up": np.clip(slope / 8.0, 0, 1),
                "It gradually fades down": np.clip(-slope / 8.0, 0, 1),
                "It fluctuates multiple times within the segment": np.clip((spread - 2.0) / 4.0, 0, 1)
                * np.clip(fluct / 2.0, 0, 1),
            },
        )

    @staticmethod
    def _rhythm(c: Category, d: dict) -> Label:
        reg, pulse = d["beat_regularity"], d["pulse"]
        return label_from_scores(
            c,
            {
                "Steady and regular beat": reg * np.clip(pulse, 0, 1.5),
                "Syncopated or groovy": reg * 0.6 * np.clip(d["onsets_per_s"] / 5.0, 0, 1.2),
                "Irregular or changing time signatures": (1 - reg) * 0.8 * (d["onsets_per_s"] > 1.0),
                "Free-flowing with no clear pulse": (1 - reg) * _bump(d["onsets_per_s"], 0.0, 1.5),
            },
        )

    @staticmethod
    def _transition(c: Category, d: dict, prev_l: float | None, next_l: float | None) -> Label:
        here = d["loudness_db"]
        up_next = (next_l - here) if next_l is not None else 0.0
        from_prev = (here - prev_l) if prev_l is not None else 0.0
        return label_from_scores(
            c,
            {
                "It cleanly continues the energy from the previous segment": _bump(from_prev, 0.0, 2.0)
                * _bump(up_next, 0.0, 2.0),
                'It acts as a noticeable break or "breather"': np.clip(-from_prev / 6.0, 0, 1)
                * np.clip(up_next / 6.0, 0, 1)
                * 2,
                "It builds tension toward the next section": np.clip(d["slope_db"] / 6.0, 0, 1)
                * np.clip(up_next / 3.0, 0, 1.5),
                "It features a sudden drop or pause before the next section": np.clip(d["tail_drop_db"] / 8.0, 0, 1.2),
                "It slowly fades out or prepares for a drop": np.clip(-d["slope_db"] / 6.0, 0, 1)
                * (next_l is None or up_next < 0),
                "It dramatically shifts the energy or mood": np.clip(abs(up_next) / 8.0, 0, 1.2),
            },
        )

    @staticmethod
    def _energy(c: Category, t: dict) -> Label:
        loud = np.clip((t["loudness_db"] + 35.0) / 25.0, 0, 1)
        spread = t["loudness_spread_db"]
        return label_from_scores(
            c,
            {
                "It stays calm and low-energy throughout.": (1 - loud) * _bump(spread, 0, 3),
                "It stays consistently high-energy.": loud * _bump(spread, 0, 3),
                "It builds steadily from calm to intense.": np.clip(t["loudness_trend_db"] / 10.0, 0, 1),
                "It has multiple peaks and valleys throughout.": np.clip(spread / 6.0, 0, 1),
            },
        )

    @staticmethod
    def _palette(c: Category, t: dict) -> Label:
        cen, perc, flat = t["centroid_hz"], t["percussive_share"], t["flatness"]
        return label_from_scores(
            c,
            {
                "Acoustic instruments": (1 - perc) * _bump(cen, 1500, 600) * 0.7,
                "Electric guitars and a rock band": perc * _bump(cen, 2500, 700) * (1 + flat * 4),
                "Synths and electronic production": _bump(flat, 0.06, 0.05) * (0.4 + perc)
                + (t["low_share"] > 0.35) * 0.3,
                "Orchestral or cinematic instruments": (1 - perc) * _bump(cen, 1500, 800) * (t["onsets_per_s"] < 3.5),
                "Folk or traditional instruments": (1 - perc) * _bump(cen, 2400, 700) * _bump(t["tempo_bpm"], 120, 40),
                "Piano-driven": (1 - perc) * _bump(cen, 1100, 400) * 0.8,
            },
        )

    @staticmethod
    def _tempo(c: Category, t: dict) -> Label:
        bpm = t["tempo_bpm"]
        return label_from_scores(
            c,
            {
                "Very slow (below 70 BPM)": _bump(bpm, 55, 12.0),
                "Slow (70-90 BPM)": _bump(bpm, 80, 12.0),
                "Moderate (90-110 BPM)": _bump(bpm, 100, 12.0),
                "Fast (110-140 BPM)": _bump(bpm, 125, 12.0),
                "Very fast (140+ BPM)": _bump(bpm, 155, 12.0),
            },
        )

    @staticmethod
    def _production(c: Category, t: dict) -> Label:
        crest, roll, flat = t["crest_db"], t["rolloff_hz"], t["flatness"]
        return label_from_scores(
            c,
            {
                "Raw, lo-fi or live-sounding": np.clip((crest - 14.0) / 6.0, 0, 1) * 0.8 + flat * 2,
                "Clean and natural": _bump(crest, 14.0, 3.0) * 0.8,
                "Very polished, glossy, and modern": np.clip((16.0 - crest) / 6.0, 0, 1)
                * np.clip((roll - 7000) / 5000, 0, 1),
                "Vintage or retro sounding": np.clip((7000 - roll) / 3000, 0, 1),
            },
        )

    @staticmethod
    def _mood(c: Category, t: dict) -> Label:
        valence = (
            np.clip(t["major_minus_minor"] * 4.0, -1, 1) * 0.7 + np.clip((t["centroid_hz"] - 1500) / 1500, -1, 1) * 0.3
        )
        arousal = (
            np.clip((t["loudness_db"] + 30.0) / 20.0, -1, 1) * 0.5 + np.clip((t["tempo_bpm"] - 100) / 40, -1, 1) * 0.5
        )
        at = lambda v, a: _bump(valence, v, 0.5) * _bump(arousal, a, 0.5)  # noqa: E731
        return label_from_scores(
            c,
            {  # (valence, arousal) centres
                "Uplifting and bright": at(0.7, 0.4),
                "Calm and peaceful": at(0.4, -0.7),
                "Melancholic and sad": at(-0.6, -0.5),
                "Dark and tense": at(-0.6, 0.3),
                "Aggressive and intense": at(-0.3, 0.9),
                "Playful and light": at(0.8, 0.0),
                "Epic and heroic": at(0.3, 0.8),
                "Mysterious and dreamy": at(-0.1, -0.2),
            },
        )

    def _visual(self, track_labels: dict[str, Label], t: dict) -> dict[str, Label]:
        v = self.vocabulary
        mood = track_labels["mood"].label
        palette = track_labels["instrumental_palette"].label
        energy = np.clip((t["loudness_db"] + 35.0) / 25.0, 0, 1)
        setting_for = {
            "Acoustic instruments": "Natural",
            "Electric guitars and a rock band": "Urban",
            "Synths and electronic production": "Futuristic or sci-fi",
            "Orchestral or cinematic instruments": "Fantasy or surreal",
            "Folk or traditional instruments": "Historical",
            "Piano-driven": "Urban",
        }
        style_for = {
            "Uplifting and bright": "Vibrant and colorful",
            "Calm and peaceful": "Soft pastel tones",
            "Melancholic and sad": "Monochromatic or limited color palette",
            "Dark and tense": "Dark and moody",
            "Aggressive and intense": "High-contrast neon",
            "Playful and light": "Vibrant and colorful",
            "Epic and heroic": "Warm golden tones",
            "Mysterious and dreamy": "Soft pastel tones",
        }
        setting = setting_for.get(palette, "Natural")
        style = style_for.get(mood, "Vibrant and colorful")
        return {
            "location": label_from_scores(
                v["location"],
                {
                    "interior": float(energy < 0.35 and "Piano" in palette),
                    "exterior": 0.6 + energy,
                },
            ),
            "visual_setting": label_from_scores(
                v["visual_setting"], {o: 1.0 if o == setting else 0.2 for o in v["visual_setting"].options}
            ),
            "visual_style": label_from_scores(
                v["visual_style"], {o: 1.0 if o == style else 0.2 for o in v["visual_style"].options}
            ),
            "visual_focus": label_from_scores(
                v["visual_focus"],
                {
                    "A single character": _bump(energy, 0.2, 0.3),
                    "Multiple focal points or characters": _bump(energy, 0.85, 0.3),
                    "Landscapes and environments": float("Orchestral" in palette or "Folk" in palette) * 0.8,
                    "Abstract shapes and motion": float("Synth" in palette) * 0.9,
                },
            ),
        }


class FeatureBackend:
    """``analysis.backend = features``: librosa descriptors, no weights, one task (`models.base.AnalyserBackend`)."""

    name = "features"
    fans_out = False
    hears_vocals = False  # its prominent-element label is a heuristic, no evidence of singing

    def available(self, settings: AnalysisSettings) -> bool:
        """Always: it needs nothing but librosa."""
        return True

    def analyser(self, settings: AnalysisSettings) -> FeatureAnalyser:
        """The feature analyser over the label vocabulary."""
        return FeatureAnalyser(load_vocabulary())


BACKEND = FeatureBackend()
