# vLLM's OpenAI server with its audio extras, for pipeline 2's audio-language model (docs/lalm.md).
#
# The public vllm/vllm-openai images leave out the audio decoding libraries (they are LGPL,
# vllm-project/vllm#8030); without them every input_audio request fails with HTTP 500. This adds
# vLLM's own `audio` extra for the same release. Not built in this repository's CI (no GPU there).
FROM vllm/vllm-openai:v0.32.0
RUN python3 -m pip install --no-cache-dir "vllm[audio]==0.32.0"
