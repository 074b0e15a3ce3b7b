"""Model backends and signal algorithms, behind the small interfaces of `base`. No Prefect here.

One subpackage per stage job, mirroring `tasks/`:

- `audio`: decoding songs, beats and downbeats, cutting a song into segments;
- `analysis`: labelling segments with the vocabulary (librosa features, CLAP);
- `lyrics`: the vocal check, Whisper transcription, lyrics files, captions;
- `script`: writing the scene script (the template writer, an LLM behind an OpenAI-compatible
  endpoint, and the parsing of its answers);
- `render`: turning scenes into clips (the CPU animatic, diffusion models, the GPU worker pool);

and `hub`, which finds checkpoints, devices and dtypes for every model backend.
"""

__all__ = ["analysis", "audio", "base", "hub", "lyrics", "render", "script"]
