"""Beats, downbeats and tempo of a song, and how credible they are (librosa + numpy, no weights).

The built-in beat tracker: `track_beats` is its one entry point, `BACKEND` its entry in
`soundsight.backends.BEAT_TRACKERS` (``"librosa"``). Every function is pure (arrays in, arrays
out; module constants only). Times are seconds; BPM is beats per minute; "frames" are analysis
frames of ``cues.HOP`` samples at ``soundsight.media.ANALYSIS_SAMPLE_RATE`` Hz (11.6 ms) unless a
docstring says otherwise.

Pipeline of `track_beats`, one module per step (each module's docstring has its details and
constants):

1. **Cues** (`cues`): three onset-like curves from one STFT - log-mel flux, the flux below
   200 Hz and harmonic change - whose sum is the *beat envelope*, and a 2.9 ms-hop onset
   envelope for note attacks.
2. **Tempo hypotheses** (`tempo`): tempogram peaks, their doubles and halves, each tracked by
   librosa's DP tracker and scored by autocorrelation, beat/subdivision lattice contrast and a
   listener tempo preference around 120 BPM; an even pulse takes the double nearer 120 BPM.
3. **Tempo changes** (`tempo`): a tempo curve is followed only where it lands on clearly more
   salient onsets than the constant tempo.
4. **Steady tempo** (`phase`): beats on one straight eighth-note lattice (85 % within a tenth of
   a beat) become that lattice, with one beat half for the whole song.
5. **Off-beat correction** (`phase`): a two-state Viterbi picks which half of the eighth-note
   lattice is the beat, from low-band onsets, chord changes and bass changes.
6. **Refinement** (`attack`): beats move onto note attacks, then to 30 % of the song's median
   attack rise.
7. **Bars** (`bars`): a Viterbi over (meter, position in bar) on eight downbeat cues, each
   weighted by how plainly it marks bars in this song, with the song's start settling 4/4's
   half-bar question where no cue is certain.
8. **Confidence** (`confidence`): 0..1 from attacks, tempo regularity, phase margin and tempo
   clarity; `confidence.is_credible` is the segment stage's snap / fall-back decision.
9. **Structure** (`structure`): 4- and 8-bar phrase starts and section boundaries on
   downbeats, for the cut planner.
"""

from soundsight.models.audio.beats.tracker import BACKEND, track_beats

__all__ = ["BACKEND", "track_beats"]
