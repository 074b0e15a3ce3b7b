"""An OpenAI-compatible chat endpoint (vLLM, SGLang, TGI, llama.cpp, OpenAI itself), with bounded retries.

Used by every writer that talks to a served model: the LLM script writer (pipeline 1) and the
audio-language model (pipeline 2). No Prefect here.

Transport failures - connection errors, timeouts, 408/409/429 and 5xx answers - are retried with
exponential backoff a bounded number of times; a server that stays down raises
`LLMUnavailableError`, whose message names the URL. Other 4xx answers mean the request itself is
wrong (unknown model, prompt longer than the context) and raise `LLMRequestError` at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from soundsight.errors import SoundsightError

if TYPE_CHECKING:
    import openai  # imported where a client is built or an error read: ~1 s that a run without a served model never pays

__all__ = ["ChatClient", "ChatTransport", "LLMRequestError", "LLMUnavailableError", "Reply", "ServedModel"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRIED_STATUS = frozenset({408, 409, 429, 502, 503, 504})  # a busy or restarting server
DEFAULT_HINT = (
    "Start the server (for example `vllm serve deepseek-ai/DeepSeek-R1-Distill-Llama-8B`) "
    "or point script.llm_base_url at a running one."
)


class LLMUnavailableError(SoundsightError):
    """The endpoint did not answer (connection refused, timeouts, 5xx) after every retry."""

    def __init__(self, base_url: str, attempts: int, last_error: BaseException, hint: str = DEFAULT_HINT):
        self.base_url = base_url
        self.attempts = attempts
        self.last_error = last_error
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        super().__init__(
            f"the LLM endpoint {base_url} did not answer after {tries} (last error: {_describe_error(last_error)}). "
            + hint
        )


class LLMRequestError(SoundsightError):
    """The endpoint answered, but refused the request (a 4xx other than 408/429)."""

    def __init__(self, base_url: str, error: openai.APIStatusError):
        self.base_url = base_url
        self.status_code = error.status_code
        super().__init__(f"the LLM endpoint {base_url} refused the request: {_describe_error(error)}")


def _describe_error(error: BaseException) -> str:
    import openai

    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {error.message}"
    cause = error.__cause__ or error.__context__
    text = f"{type(error).__name__}: {error}"
    return f"{text} ({type(cause).__name__}: {cause})" if cause else text


@dataclass(frozen=True)
class ServedModel:
    """One entry of the server's ``/models`` list.

    id : the name requests use (vLLM: ``--served-model-name``, else the model argument).
    root : what the server loaded, when it says (vLLM: the hub id or the checkpoint folder).
    max_model_len : the server's context length, when it says (vLLM does).

    vLLM's ``created`` field is the time of the listing, not of the model, so it is not kept.
    """

    id: str
    root: str = ""
    max_model_len: int | None = None


@dataclass
class Reply:
    """One chat completion, as received."""

    content: str  # message.content; may still contain <think> blocks
    reasoning: str = ""  # the separate reasoning field, when the server splits it off
    finish_reason: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatTransport(TypedDict, total=False):
    """How a writer's `ChatClient` retries and what it talks through; each key defaults as there.

    Attributes
    ----------
    retries : int
        Transport retries per request after the first try.
    backoff_seconds, max_backoff_seconds : float
        The first wait between tries and the longest, seconds.
    client : openai.OpenAI or None
        Used instead of building one.
    """

    retries: int
    backoff_seconds: float
    max_backoff_seconds: float
    client: openai.OpenAI | None


class ChatClient:
    """One OpenAI-compatible endpoint.

    Parameters
    ----------
    base_url : str
        The endpoint, e.g. ``http://127.0.0.1:8000/v1``.
    api_key : str
        Sent as the bearer token (vLLM accepts any).
    timeout_seconds : float
        Per request.
    model : str
        Served model name; empty: the first one the server's ``/models`` lists.
    retries : int
        Transport retries per request after the first try; the wait doubles from
        `backoff_seconds` up to `max_backoff_seconds`.
    client : openai.OpenAI, optional
        Used instead of building one.
    unavailable_hint : str
        What `LLMUnavailableError` tells the user to do when the endpoint does not answer.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "EMPTY",
        *,
        timeout_seconds: float = 600.0,
        model: str = "",
        retries: int = 4,
        backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 30.0,
        client: openai.OpenAI | None = None,
        unavailable_hint: str = DEFAULT_HINT,
    ):
        self.base_url = base_url
        self.unavailable_hint = unavailable_hint
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        import openai

        # The openai client's own retries are switched off: ours are logged, recorded in the
        # caller's notes, bounded by `retries` and end in an error that names the URL.
        self.client = client or openai.OpenAI(
            base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_seconds, max_retries=0
        )
        self._model_id: str | None = model or None
        self._served: ServedModel | None = None
        self._reached = False  # whether the server has answered this client yet

    def served_model_id(self) -> str:
        """The served model's name.

        The model that answers: the configured one, or else the first one the server's
        ``/models`` lists (asked once, then remembered). Part of writer ids, so of cache keys.
        """
        if self._model_id is None:
            page = self.with_retries("listing models", self.client.models.list, notes=[])
            if not page.data:
                raise SoundsightError(f"the LLM endpoint {self.base_url} serves no models (its /models list is empty)")
            self._model_id = page.data[0].id
        return self._model_id

    def served_model(self) -> ServedModel:
        """The answering model's entry in the server's ``/models`` list (asked once, then remembered).

        The configured model's entry, else the first one. A configured model the server does not
        list comes back with only its id (a request for it will then fail with the server's 404).
        """
        if self._served is None:
            page = self.with_retries("listing models", self.client.models.list, notes=[])
            if not page.data:
                raise SoundsightError(f"the endpoint {self.base_url} serves no models (its /models list is empty)")
            wanted = self._model_id or page.data[0].id
            entry = next((m for m in page.data if m.id == wanted), None)
            extra = (entry.model_extra or {}) if entry is not None else {}
            length = extra.get("max_model_len")
            self._served = ServedModel(
                id=wanted, root=str(extra.get("root") or ""), max_model_len=length if isinstance(length, int) else None
            )
            self._model_id = wanted
        return self._served

    def complete(self, messages: list[dict], *, notes: list[str], **request: Any) -> Reply:
        """One chat completion of `messages` (with transport retries), unpacked into a `Reply`.

        `request` holds the sampling and format fields of the chat API (``temperature``,
        ``top_p``, ``max_tokens``, ``seed``, ``response_format``); retries are appended to `notes`.
        """
        model = self.served_model_id()
        completion = self.with_retries(
            "chat completion",
            lambda: self.client.chat.completions.create(model=model, messages=messages, **request),
            notes,
        )
        choice = completion.choices[0]
        # vLLM started with --reasoning-parser returns the reasoning beside the content, named
        # `reasoning_content` (older releases) or `reasoning` (newer ones).
        extra = choice.message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
        usage = completion.usage
        return Reply(
            content=choice.message.content or "",
            reasoning=reasoning if isinstance(reasoning, str) else json.dumps(reasoning),
            finish_reason=choice.finish_reason or "",
            model=completion.model or model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def with_retries(self, what: str, call: Callable[[], T], notes: list[str]) -> T:
        """Run `call`; after a failure that may heal, wait and try again, `self.retries` times at most.

        Retried: timeouts, 408, 409, 429, 502, 503 and 504 (a busy or restarting server), and a
        refused connection once the server has answered before (it is restarting). Not retried:
        a server never reached (`LLMUnavailableError` at once), other 4xx (`LLMRequestError`:
        the request itself is wrong) and 500 (a bug that repeats). The error names the URL and
        the number of attempts actually made.
        """
        import openai

        delay = self.backoff_seconds
        for attempt in range(1, self.retries + 2):
            try:
                result = call()
                self._reached = True
                return result
            except openai.APITimeoutError as error:
                last: BaseException = error
            except openai.APIConnectionError as error:
                if not self._reached:
                    raise LLMUnavailableError(self.base_url, attempt, error, self.unavailable_hint) from error
                last = error
            except openai.APIStatusError as error:
                self._reached = True
                if error.status_code not in RETRIED_STATUS:
                    if error.status_code >= 500:
                        raise LLMUnavailableError(self.base_url, attempt, error, self.unavailable_hint) from error
                    raise LLMRequestError(self.base_url, error) from error
                last = error
            if attempt > self.retries:
                break
            wait = min(delay, self.max_backoff_seconds)
            message = (
                f"{what} at {self.base_url} failed ({_describe_error(last)}); "
                f"retry {attempt} of {self.retries} in {wait:g} s"
            )
            logger.warning(message)
            notes.append(message)
            time.sleep(wait)
            delay *= 2
        raise LLMUnavailableError(self.base_url, attempt, last, self.unavailable_hint) from last

    def check_reachable(self, timeout_seconds: float = 5.0) -> None:
        """Ask the server's ``/models`` once, within `timeout_seconds`.

        A run fails in seconds when the endpoint is down, instead of after every retry of every
        request.

        Raises
        ------
        LLMUnavailableError
            No answer (connection refused, timeout, 5xx).
        """
        import openai

        try:
            self.client.with_options(timeout=timeout_seconds, max_retries=0).models.list()
        except (openai.APIConnectionError, openai.InternalServerError) as error:
            raise LLMUnavailableError(self.base_url, 1, error, self.unavailable_hint) from error
        except openai.APIStatusError:
            pass  # it answered (perhaps it wants a key for /models): reachable
        self._reached = True
