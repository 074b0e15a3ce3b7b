"""Script writers: one scene per segment, from labels (the template writer) or from an LLM.

`chat` is the OpenAI-compatible client every served model is reached through; `answers` reads
what a model wrote; `style` is the one sentence of visual guidelines every scene prompt ends with.
Pipeline 2: `listening` plans how the audio-language model hears the song, `lalm` has it write the
story, `story_to_scenes` is the prompt that splits the story into scenes.
"""

from soundsight.models.script.bible import build_bible, reference_prompt, scene_prompt
from soundsight.models.script.chat import ChatClient, LLMRequestError, LLMUnavailableError
from soundsight.models.script.llm import LLMScriptWriter
from soundsight.models.script.style import style_sentence
from soundsight.models.script.template import TemplateScriptWriter

__all__ = [
    "ChatClient",
    "LLMRequestError",
    "LLMScriptWriter",
    "LLMUnavailableError",
    "TemplateScriptWriter",
    "build_bible",
    "reference_prompt",
    "scene_prompt",
    "style_sentence",
]
