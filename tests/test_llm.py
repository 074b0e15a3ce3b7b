"""The LLM script writer (models/script/: the chat client, answer parsing, the writer).

Two kinds of tests:
- the parser on recorded and hand-written answers (tests/data/, see llm_README.md there): the
  paper's own DeepSeek-R1 answer (Block 3) must come out as its 7 scenes;
- the writer end to end against a real vLLM server (CPU build) serving a tiny randomly
  initialised Llama (fixtures in tests/llm_fixtures.py). Random weights never write "SCENE 1:",
  so free-text mode exercises the repair loop and the fallback; structured mode must still
  return exactly N schema-valid scenes because the server constrains decoding to the schema.
  Outages, 503s and hangs are produced by a TCP relay placed in front of the shared server.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from soundsight.errors import SoundsightError
from soundsight.models.base import ScriptRequest, ScriptResult
from soundsight.models.script.answers import (
    format_attempt,
    merge_scenes,
    parse_free_text,
    parse_structured,
    read_reply,
    script_json_schema,
    split_reasoning,
)
from soundsight.models.script.chat import LLMRequestError, LLMUnavailableError, Reply
from soundsight.models.script.llm import LLMScriptWriter
from soundsight.models.script.style import style_sentence
from soundsight.models.script.template import TemplateScriptWriter
from soundsight.prompts import load_vocabulary, script_prompt
from soundsight.schemas import Analysis, Label, Scene, SegmentLabels
from soundsight.settings import ScriptSettings
from tests.llm_fixtures import MAX_MODEL_LEN, SERVED_MODEL_NAME

DATA = Path(__file__).parent / "data"


def read_data(name: str) -> str:
    return (DATA / name).read_text()


# ---------------------------------------------------------------------------------------------
# A request like the pipeline's, and a small deterministic writer to fall back on.
# ---------------------------------------------------------------------------------------------


def make_request(n: int, characters: str = "") -> ScriptRequest:
    """A Block 1 prompt for `n` scenes, labelled with rotating vocabulary options."""
    vocabulary = load_vocabulary()

    def label(category, k: int) -> Label:
        options = category.options
        return Label(
            category=category.key,
            name=category.name,
            label=options[k % len(options)],
            score=0.5,
            distribution={o: 1 / len(options) for o in options},
        )

    analysis = Analysis(
        backend="test",
        backend_id="test",
        vocabulary_hash=vocabulary.content_hash,
        track={c.key: label(c, 0) for c in vocabulary.scope("track")},
        visual={c.key: label(c, 1) for c in vocabulary.scope("visual")},
        segments=[
            SegmentLabels(index=i, labels={c.key: label(c, i) for c in vocabulary.scope("segment")}) for i in range(n)
        ],
    )
    durations = [4.0 + 0.5 * i for i in range(n)]
    prompt = script_prompt(
        track_sentences=[lab.sentence() for lab in analysis.track.values()],
        segment_sentences=[[lab.sentence() for lab in seg.labels.values()] for seg in analysis.segments],
        durations=durations,
        visual_sentences=[lab.sentence() for lab in analysis.visual.values()],
        characters=characters,
    )
    return ScriptRequest(prompt=prompt, analysis=analysis, durations=durations, characters=characters)


class LabelEchoWriter:
    """A deterministic script writer: each scene names a heron and its segment's first label."""

    name = "label-echo"
    writer_id = "label-echo-1"

    def __init__(self):
        self.calls = 0

    def __call__(self, request: ScriptRequest) -> ScriptResult:
        self.calls += 1
        scenes = []
        for i, seconds in enumerate(request.durations):
            first = next(iter(request.analysis.segments[i].labels.values()))
            text = f"A grey heron wades through a marsh; {first.label.lower()}."
            scenes.append(Scene(index=i, description=text, duration=seconds, source="writer"))
        return ScriptResult(scenes=scenes, characters="a grey heron", style="echo style")


# ---------------------------------------------------------------------------------------------
# Parser: recorded and hand-written answers.
# ---------------------------------------------------------------------------------------------


def test_block3_reasoning_is_set_aside():
    reasoning, answer = split_reasoning(read_data("deepseek_r1_block3.txt"))
    assert reasoning.startswith("- Okay, so I'm trying to help this user")
    assert "</think>" not in answer and "Okay, so" not in answer
    assert answer.startswith("BEGIN SCRIPT")


def test_block3_parses_into_its_seven_scenes():
    _, answer = split_reasoning(read_data("deepseek_r1_block3.txt"))
    parsed = parse_free_text(answer, 7)
    assert parsed.problems == [] and parsed.notes == []
    assert sorted(parsed.scenes) == list(range(7))
    assert parsed.scenes[0].startswith("A group of four people, dressed in vibrant, flowing outfits")
    # Scene 2 is hard-wrapped over three lines in the paper, with " ." at a line start.
    assert parsed.scenes[1] == (
        "The group reaches a clearing where a lone figure, dressed in a shimmering silver cloak, stands. "
        "The figure raises their arms, and the strings of light twist into a swirling vortex above. The "
        "group steps into the light, their colors blending together as the strings pull them toward the sky."
    )
    assert parsed.scenes[6].endswith("as the music crescendos to a final, uplifting note.")
    assert not any(text.startswith(("-", "SCENE")) or "END SCRIPT" in text for text in parsed.scenes.values())


def test_block3_wrong_scene_count_is_a_problem():
    _, answer = split_reasoning(read_data("deepseek_r1_block3.txt"))
    more = parse_free_text(answer, 8)
    assert more.problems == ["SCENE 8 is missing"] and len(more.scenes) == 7
    fewer = parse_free_text(answer, 6)
    assert fewer.problems == ["the answer has SCENE 7 but scenes are numbered 1 to 6"]
    assert sorted(fewer.scenes) == list(range(6))


def test_markdown_decorations_and_think_tags():
    reasoning, answer = split_reasoning(read_data("llm_think_markdown.txt"))
    assert "draft I will not use" in reasoning
    parsed = parse_free_text(answer, 3)
    assert parsed.problems == []
    assert parsed.scenes == {
        0: "A red fox with a white-tipped tail trots across a frozen lake at dawn, its breath steaming in the cold air.",
        1: "The red fox with a white-tipped tail leaps between snowy pine branches as the beat drops.",
        2: "The red fox with a white-tipped tail curls up beside a glowing campfire under the stars.",
    }


def test_answer_cut_off_while_thinking():
    reply = Reply(content=read_data("llm_truncated_thinking.txt"), finish_reason="length")
    answer, parsed = read_reply(reply, 4, "free_text")
    assert answer == "" and parsed.scenes == {}
    assert parsed.problems == [
        "the answer contained only reasoning and no script after it",
        "the answer was cut off by the token limit",
    ]


@pytest.mark.parametrize(
    "answer, scenes, problems",
    [
        ("BEGIN SCRIPT\n**SCENE 1**: A fox.\nScene 2 - A hare.", {0: "A fox.", 1: "A hare."}, []),
        ("BEGIN SCRIPT\nSCENE 1:\nA fox\nruns.\n\nSCENE 2:\nA hare.", {0: "A fox runs.", 1: "A hare."}, []),
        ("SCENE 1: A fox.\nSCENE 2: A hare.", {0: "A fox.", 1: "A hare."}, []),
        ("BEGIN SCRIPT\n1. **Scene 1:** A **red** fox.\n2. SCENE 2) A hare.", {0: "A red fox.", 1: "A hare."}, []),
        ("BEGIN SCRIPT\nScene 1 is a fox.\nSCENE 1: A fox.\nSCENE 2: A hare.", {0: "A fox.", 1: "A hare."}, []),
        ("BEGIN SCRIPT\nSCENE 1: A fox.\nSCENE 2:\nEND SCRIPT", {0: "A fox."}, ["SCENE 2 has no description"]),
        (
            "BEGIN SCRIPT\nSCENE 1: A fox.\nSCENE 1: Another fox.",
            {0: "A fox."},
            ["SCENE 2 is missing", "SCENE 1 appeared more than once"],
        ),
        ("I cannot write that.", {}, ['no line started with "SCENE #:" and there was no "BEGIN SCRIPT" line']),
        ("", {}, ["the answer was empty"]),
    ],
)
def test_free_text_variants(answer, scenes, problems):
    parsed = parse_free_text(answer, 2)
    assert parsed.scenes == scenes
    assert parsed.problems == problems


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("SCENE BEGIN SCRIPT END 0123:-*#\n<think>/ab.")), max_size=300),
    st.integers(1, 9),
)
def test_free_text_parser_never_fails_and_stays_in_range(text, n):
    reasoning, answer = split_reasoning(text)
    parsed = parse_free_text(answer, n)
    assert set(parsed.scenes) <= set(range(n))
    assert all(parsed.scenes.values())
    if len(parsed.scenes) < n:
        assert parsed.problems


def test_structured_parsing():
    ok = parse_structured(
        '```json\n{"characters": "a fox", "scenes": [{"description": "A fox."}, {"description": " A\\nhare. "}]}\n```',
        2,
    )
    assert ok.problems == [] and ok.scenes == {0: "A fox.", 1: "A hare."} and ok.characters == "a fox"

    short = parse_structured('{"characters": "", "scenes": [{"description": "A fox."}]}', 2)
    assert short.scenes == {0: "A fox."} and short.problems == ['"scenes" has 1 entries; it must have exactly 2']

    empty = parse_structured('{"characters": "", "scenes": [{"description": "A fox."}, {"description": "  "}]}', 2)
    assert empty.problems == ["scene 2 has an empty description"]

    broken = parse_structured('{"characters": "a fox", "scenes": [{"descr', 2)
    assert broken.scenes == {} and broken.problems[0].startswith("the answer is not valid JSON")

    # A server that ignores response_format answers in the paper's format: still readable.
    _, prose = split_reasoning(read_data("deepseek_r1_block3.txt"))
    as_text = parse_structured(prose, 7)
    assert len(as_text.scenes) == 7 and as_text.notes[0].startswith("the answer was not JSON")


def test_schema_pins_the_scene_count_and_bounds_strings():
    schema = script_json_schema(5, max_scene_chars=123, max_character_chars=45)
    scenes = schema["properties"]["scenes"]
    assert scenes["minItems"] == scenes["maxItems"] == 5
    assert scenes["items"]["properties"]["description"]["maxLength"] == 123
    assert schema["properties"]["characters"]["maxLength"] == 45
    assert schema["additionalProperties"] is False and scenes["items"]["additionalProperties"] is False
    assert schema["required"] == ["characters", "scenes"]


def test_missing_scenes_are_filled_from_the_fallback_only():
    # Block 3 without its SCENE 3 and SCENE 6 lines: five usable scenes, two to fill.
    text = "\n".join(
        line
        for line in read_data("deepseek_r1_block3.txt").splitlines()
        if not line.startswith(("- SCENE 3:", "- SCENE 6:"))
    )
    _, answer = split_reasoning(text)
    parsed = parse_free_text(answer, 7)
    assert parsed.problems == ["SCENEs 3, 6 are missing"]
    request = make_request(7)
    fallback = LabelEchoWriter()(request)
    scenes = merge_scenes(request.durations, parsed.scenes, fallback.scenes)
    assert [s.source for s in scenes] == ["llm", "llm", "fallback", "llm", "llm", "fallback", "llm"]
    assert scenes[2].description == fallback.scenes[2].description
    assert scenes[3].description == parsed.scenes[3]
    assert [s.duration for s in scenes] == request.durations


def test_transcript_keeps_reasoning_from_either_place():
    reasoning, answer = split_reasoning(read_data("deepseek_r1_block3.txt"))
    # A server with a reasoning parser sends the reasoning beside the content ...
    split = Reply(
        content=answer, reasoning=reasoning, finish_reason="stop", model="r1", prompt_tokens=900, completion_tokens=700
    )
    _, parsed = read_reply(split, 7, "free_text")
    entry = format_attempt(1, 3, "free_text", split, parsed)
    assert "Okay, so I'm trying" in entry and "SCENE 7:" in entry and "tokens 900 prompt + 700 completion" in entry
    # ... one without it leaves it in the content, which is kept as received.
    inline = Reply(content=read_data("deepseek_r1_block3.txt"), finish_reason="stop", model="r1")
    _, parsed = read_reply(inline, 7, "free_text")
    assert parsed.problems == []
    assert read_data("deepseek_r1_block3.txt") in format_attempt(2, 3, "free_text", inline, parsed, "Your answer ...")


# ---------------------------------------------------------------------------------------------
# Transport errors without a server.
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_error_names_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    writer = LLMScriptWriter(ScriptSettings(llm_base_url=url), LabelEchoWriter(), retries=2, backoff_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError) as error:
        writer.served_model_id()
    assert isinstance(error.value, SoundsightError)
    # A server never reached is not retried (chat.ChatClient.with_retries): the run fails at once.
    assert url in str(error.value) and "after 1 attempt" in str(error.value)
    assert time.monotonic() - started < 10

    named = LLMScriptWriter(ScriptSettings(llm_base_url=url, llm_model="m"), None, retries=1, backoff_seconds=0.05)
    with pytest.raises(SoundsightError, match=re.escape(url)):
        named(make_request(2))


# ---------------------------------------------------------------------------------------------
# End to end against the real vLLM server.
# ---------------------------------------------------------------------------------------------


def _settings(base_url: str, **overrides) -> ScriptSettings:
    values = dict(llm_base_url=base_url, temperature=1.0, top_p=1.0, seed=0, timeout_seconds=60, repair_attempts=2)
    return ScriptSettings(**(values | overrides))


@pytest.mark.vllm
def test_model_id_comes_from_the_server(vllm_server):
    writer = LLMScriptWriter(_settings(vllm_server))
    assert writer.served_model_id() == SERVED_MODEL_NAME
    assert writer.writer_id == f"openai-chat:{SERVED_MODEL_NAME}:structured:parser-2"
    assert LLMScriptWriter(_settings(vllm_server, llm_model="pinned")).served_model_id() == "pinned"


@pytest.mark.vllm
def test_free_text_random_model_is_repaired_then_filled(vllm_server):
    n, max_tokens = 8, 48
    fallback = LabelEchoWriter()
    writer = LLMScriptWriter(_settings(vllm_server, llm_output="free_text", max_tokens=max_tokens), fallback)
    request = make_request(n)
    result = writer(request)

    assert [s.index for s in result.scenes] == list(range(n))
    assert [s.duration for s in result.scenes] == request.durations
    expected_fallback = LabelEchoWriter()(request).scenes
    for scene in result.scenes:
        assert scene.source in ("llm", "fallback")
        if scene.source == "fallback":
            assert scene.description == expected_fallback[scene.index].description
        else:
            assert scene.description
    assert any(s.source == "fallback" for s in result.scenes)
    assert fallback.calls == 1

    # Every attempt (1 ask + 2 repairs) is in the raw response, each repair with its request.
    raw = result.raw_response
    assert [int(k) for k in re.findall(r"===== attempt (\d) of 3", raw)] == [1, 2, 3]
    assert raw.count("----- repair request -----") == 2 and raw.count("----- content (as received) -----") == 3
    assert any("written by the fallback writer 'label-echo'" in note for note in result.notes)

    # The largest request (a repair: prompt + previous answer + problems) must fit the context.
    prompt_tokens = [int(t) for t in re.findall(r"tokens (\d+) prompt", raw)]
    assert len(prompt_tokens) == 3 and max(prompt_tokens) + max_tokens <= MAX_MODEL_LEN


@pytest.mark.vllm
def test_structured_random_model_gives_exactly_n_scenes(vllm_server):
    n = 6
    fallback = LabelEchoWriter()
    writer = LLMScriptWriter(
        _settings(vllm_server, llm_output="structured", max_tokens=1024),
        fallback,
        max_scene_chars=100,
        max_character_chars=40,
    )
    request = make_request(n)
    result = writer(request)

    assert [s.index for s in result.scenes] == list(range(n))
    assert all(s.source == "llm" for s in result.scenes), result.notes
    assert all(0 < len(s.description) <= 100 for s in result.scenes)
    assert len(result.characters) <= 40
    assert fallback.calls == 0
    assert "===== attempt 1 of 3" in result.raw_response and '"scenes"' in result.raw_response
    # The same style sentence whichever writer ran: video prompts must not depend on it.
    assert result.style == style_sentence(request.analysis) == TemplateScriptWriter()(request).style


@pytest.mark.vllm
def test_unknown_model_is_refused_without_retries(vllm_server):
    writer = LLMScriptWriter(_settings(vllm_server, llm_model="no-such-model"), LabelEchoWriter(), backoff_seconds=5)
    started = time.monotonic()
    with pytest.raises(LLMRequestError, match=re.escape(vllm_server)) as error:
        writer(make_request(2))
    assert error.value.status_code == 404
    assert time.monotonic() - started < 5  # no backoff sleeps: a 4xx is not retried


class Relay:
    """A TCP relay on its own port in front of the shared vLLM server.

    It stands in for the network path, not for the model: every answer comes from the real
    server. `stop()`/`start()` take the endpoint down and up (existing connections are cut, as
    when a server process dies), and `misbehave` queues what the next new connections get
    instead of being relayed: "503" (an HTTP 503 answer) or "hang" (no answer at all).
    """

    def __init__(self, target_url: str):
        self.target = ("127.0.0.1", int(re.search(r":(\d+)/", target_url).group(1)))
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.misbehave: list[str] = []
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.1)
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        self._running.clear()
        time.sleep(0.2)  # the accept loop notices within its 0.1 s timeout and closes the listener
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._running.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                behaviour = self.misbehave.pop(0) if self.misbehave else "relay"
                threading.Thread(target=self._serve, args=(self._track(client), behaviour), daemon=True).start()

    def _serve(self, client: socket.socket, behaviour: str) -> None:
        if behaviour == "relay":
            upstream = self._track(socket.create_connection(self.target))
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            self._pump(client, upstream)
        elif behaviour == "503":
            self._read_request(client)
            client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            client.close()
        elif behaviour == "hang":
            self._read_request(client)
            while self._running.is_set() and client.recv(1 << 16):  # until the client gives up
                pass

    @staticmethod
    def _read_request(client: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            if not (chunk := client.recv(1 << 16)):
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        match = re.search(rb"content-length: *(\d+)", head, re.I)
        while match and len(body) < int(match.group(1)):
            if not (chunk := client.recv(1 << 16)):
                return
            body += chunk

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(1 << 16):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def relay(vllm_server):
    relay = Relay(vllm_server)
    relay.start()
    yield relay
    relay.stop()  # only the relay: the shared server keeps running for the other tests


@pytest.mark.vllm
def test_retries_until_a_stopped_server_is_back(relay):
    writer = LLMScriptWriter(
        _settings(relay.base_url, llm_output="structured", max_tokens=512),
        LabelEchoWriter(),
        retries=6,
        backoff_seconds=0.25,
        max_scene_chars=60,
        max_character_chars=20,
    )
    assert writer.served_model_id() == SERVED_MODEL_NAME  # the server is up ...
    relay.stop()  # ... then goes away, and comes back two seconds into the next call
    restart = threading.Timer(2.0, relay.start)
    restart.start()
    started = time.monotonic()
    try:
        result = writer(make_request(3))
    finally:
        restart.join()
    elapsed = time.monotonic() - started

    assert [s.source for s in result.scenes] == ["llm"] * 3
    retries = [note for note in result.notes if "retry" in note]
    assert retries and all(relay.base_url in note for note in retries)
    assert "APIConnectionError" in retries[0]
    assert 2.0 <= elapsed < 30


@pytest.mark.vllm
def test_retries_on_503_and_timeouts(relay):
    writer = LLMScriptWriter(
        _settings(
            relay.base_url, llm_model=SERVED_MODEL_NAME, llm_output="structured", max_tokens=512, timeout_seconds=3
        ),
        LabelEchoWriter(),
        retries=3,
        backoff_seconds=0.1,
        max_scene_chars=60,
        max_character_chars=20,
    )
    relay.misbehave = ["503", "hang"]
    result = writer(make_request(2))

    assert [s.source for s in result.scenes] == ["llm"] * 2
    retries = [note for note in result.notes if "retry" in note]
    assert len(retries) == 2
    assert "HTTP 503" in retries[0] and "retry 1 of 3" in retries[0]
    assert "APITimeoutError" in retries[1] and "retry 2 of 3" in retries[1]
