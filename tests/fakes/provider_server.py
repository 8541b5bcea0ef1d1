"""A local fake of the OpenAI, Anthropic, Gemini and Ollama HTTP APIs, for tests.

It answers with each provider's documented response shapes (JSON, SSE and NDJSON streams),
records every request it gets, and fails on demand: a model named ``error-<status>`` (e.g.
``error-429``) gets that HTTP status with the provider's error body. Usage numbers are fixed
(see the ``*_USAGE`` constants) so tests can assert exact tokens.

    with provider_server() as server:
        client = openai.OpenAI(base_url=server.url("openai"), api_key="k")
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TEXT_PIECES = ("Hello", " from the", " fake server.")
TEXT = "".join(TEXT_PIECES)
CREATED = 1_767_225_600
EMBEDDING = [0.25, -0.5, 0.125]

OPENAI_CHAT_USAGE: dict[str, Any] = {
    "prompt_tokens": 25,
    "completion_tokens": 12,
    "total_tokens": 37,
    "prompt_tokens_details": {"cached_tokens": 10, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0},
}
OPENAI_RESPONSES_USAGE: dict[str, Any] = {
    "input_tokens": 30,
    "input_tokens_details": {"cached_tokens": 8},
    "output_tokens": 15,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 45,
}
OPENAI_EMBEDDINGS_USAGE: dict[str, Any] = {"prompt_tokens": 7, "total_tokens": 7}
ANTHROPIC_USAGE: dict[str, Any] = {
    "input_tokens": 20,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 50,
    "output_tokens": 15,
}
GEMINI_USAGE: dict[str, Any] = {
    "promptTokenCount": 40,
    "cachedContentTokenCount": 16,
    "candidatesTokenCount": 9,
    "thoughtsTokenCount": 6,
    "totalTokenCount": 55,
}
OLLAMA_USAGE: dict[str, Any] = {"prompt_eval_count": 26, "eval_count": 11}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeProviderServer:
    """The running server: ``base_url``, ``url(provider)``, and the ``requests`` it got."""

    base_url: str
    requests: list[RecordedRequest] = field(default_factory=list)

    def url(self, provider: str) -> str:
        """The base URL each SDK expects: OpenAI's ends in /v1, the others are the host."""
        return self.base_url + "/v1" if provider == "openai" else self.base_url

    def last(self, path_part: str = "") -> RecordedRequest:
        for request in reversed(self.requests):
            if path_part in request.path:
                return request
        raise LookupError(f"no request to {path_part!r}")


def _openai_response_model(model: str) -> str:
    return f"{model}-2024-07-18"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK holds
    # the body back ~40 ms per response.
    disable_nagle_algorithm = True
    server_version = "fake-provider/1"
    recorder: FakeProviderServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # -- plumbing ---------------------------------------------------------------------------
    def date_time_string(self, timestamp: float | None = None) -> str:
        """A fixed Date header: SDKs that expose response headers return the same value for every call."""
        return super().date_time_string(CREATED)

    def handle(self) -> None:
        # A client may drop its kept-alive connection (openai's does after each stream).
        with contextlib.suppress(ConnectionResetError):
            super().handle()

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.recorder.requests.append(
            RecordedRequest(
                "POST", parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body
            )
        )
        body = body if isinstance(body, dict) else {}
        path = parts.path
        gemini = re.fullmatch(r"/v1(?:beta|alpha)?/models/([^:]+):(\w+)", path)
        if path == "/v1/chat/completions":
            self._openai_chat(body)
        elif path == "/v1/responses":
            self._openai_responses(body)
        elif path == "/v1/embeddings":
            self._openai_embeddings(body)
        elif path == "/v1/messages":
            self._anthropic_messages(body)
        elif gemini:
            self._gemini(gemini.group(1), gemini.group(2), body)
        elif path in ("/api/chat", "/api/generate", "/api/embed"):
            self._ollama(path.rsplit("/", 1)[1], body)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, content_type: str, pieces: Iterator[bytes]) -> None:
        """Chunked transfer encoding on a kept-alive connection, as the providers' servers stream."""
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _sse(self, events: list[tuple[str | None, Any]], done: bool = False) -> None:
        def pieces() -> Iterator[bytes]:
            for name, data in events:
                prefix = f"event: {name}\n" if name else ""
                yield f"{prefix}data: {json.dumps(data)}\n\n".encode()
            if done:
                yield b"data: [DONE]\n\n"

        self._stream("text/event-stream", pieces())

    def _error_status(self, model: Any) -> int | None:
        match = re.fullmatch(r"error-(\d{3})", str(model or ""))
        return int(match.group(1)) if match else None

    # -- OpenAI -----------------------------------------------------------------------------
    def _openai_error(self, status: int) -> None:
        kind = "rate_limit_exceeded" if status == 429 else "server_error"
        self._json(status, {"error": {"message": f"fake {status}", "type": kind, "param": None, "code": kind}})

    def _openai_chat(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if (status := self._error_status(model)) is not None:
            return self._openai_error(status)
        base = {"id": "chatcmpl-fake-1", "created": CREATED, "model": _openai_response_model(model)}
        base["system_fingerprint"] = "fp_fake"
        base["service_tier"] = "default"
        if not body.get("stream"):
            message = {"role": "assistant", "content": TEXT, "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            return self._json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": OPENAI_CHAT_USAGE}
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in TEXT_PIECES]
        chunks = []
        for delta in deltas:
            chunks.append({"index": 0, "delta": delta, "finish_reason": None, "logprobs": None})
        chunks.append({"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None})
        events: list[tuple[str | None, Any]] = []
        for choice in chunks:
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if include_usage:
                chunk["usage"] = None
            events.append((None, chunk))
        if include_usage:
            events.append(
                (None, {**base, "object": "chat.completion.chunk", "choices": [], "usage": OPENAI_CHAT_USAGE})
            )
        self._sse(events, done=True)

    def _openai_responses(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if (status := self._error_status(model)) is not None:
            return self._openai_error(status)
        text_part = {"type": "output_text", "text": TEXT, "annotations": [], "logprobs": []}
        item = {
            "id": "msg_fake_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [text_part],
        }
        response = {
            "id": "resp_fake_1",
            "object": "response",
            "created_at": CREATED,
            "status": "completed",
            "model": _openai_response_model(model),
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "max_output_tokens": body.get("max_output_tokens"),
            "incomplete_details": None,
            "error": None,
            "instructions": body.get("instructions"),
            "metadata": {},
            "service_tier": "default",
            "usage": OPENAI_RESPONSES_USAGE,
        }
        if not body.get("stream"):
            return self._json(200, response)
        started = {**response, "status": "in_progress", "output": [], "usage": None}
        empty_item = {**item, "status": "in_progress", "content": []}
        seq = iter(range(100))
        common = {"output_index": 0, "item_id": "msg_fake_1", "content_index": 0}
        events: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "response": started}),
            ("response.in_progress", {"type": "response.in_progress", "response": started}),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 0, "item": empty_item},
            ),
            (
                "response.content_part.added",
                {"type": "response.content_part.added", **common, "part": {**text_part, "text": ""}},
            ),
        ]
        for piece in TEXT_PIECES:
            delta = {"type": "response.output_text.delta", **common, "delta": piece, "logprobs": []}
            events.append(("response.output_text.delta", delta))
        events += [
            (
                "response.output_text.done",
                {"type": "response.output_text.done", **common, "text": TEXT, "logprobs": []},
            ),
            ("response.content_part.done", {"type": "response.content_part.done", **common, "part": text_part}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": response}),
        ]
        for _, data in events:
            data["sequence_number"] = next(seq)
        self._sse(events)

    def _openai_embeddings(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if (status := self._error_status(model)) is not None:
            return self._openai_error(status)
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
        if body.get("encoding_format") == "base64":
            vector: Any = base64.b64encode(struct.pack(f"<{len(EMBEDDING)}f", *EMBEDDING)).decode()
        else:
            vector = EMBEDDING
        data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
        self._json(200, {"object": "list", "data": data, "model": model, "usage": OPENAI_EMBEDDINGS_USAGE})

    # -- Anthropic --------------------------------------------------------------------------
    def _anthropic_messages(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if (status := self._error_status(model)) is not None:
            kind = "rate_limit_error" if status == 429 else "api_error"
            payload = {"type": "error", "error": {"type": kind, "message": f"fake {status}"}}
            return self._json(status, payload, {"request-id": "req_fake_error"})
        message = {
            "id": "msg_fake_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": ANTHROPIC_USAGE,
        }
        if not body.get("stream"):
            return self._json(200, message, {"request-id": "req_fake_1"})
        start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
        events: list[tuple[str | None, Any]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {**message, "content": [], "stop_reason": None, "usage": start_usage},
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]
        for piece in TEXT_PIECES:
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            events.append(("content_block_delta", delta))
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        self._sse(events)

    # -- Gemini -----------------------------------------------------------------------------
    def _gemini(self, model: str, method: str, body: dict[str, Any]) -> None:
        if (status := self._error_status(model)) is not None:
            kind = "RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL"
            return self._json(status, {"error": {"code": status, "message": f"fake {status}", "status": kind}})
        if method == "embedContent":
            return self._json(200, {"embedding": {"values": EMBEDDING}})
        if method == "batchEmbedContents":
            count = len(body.get("requests") or [1])
            return self._json(200, {"embeddings": [{"values": EMBEDDING} for _ in range(count)]})

        def response(text: str, finish: str | None, usage: dict[str, Any]) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {
                "candidates": [candidate],
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": "gem-fake-1",
            }

        if method == "generateContent":
            return self._json(200, response(TEXT, "STOP", GEMINI_USAGE))
        if method == "streamGenerateContent":
            partial = {
                "promptTokenCount": GEMINI_USAGE["promptTokenCount"],
                "totalTokenCount": GEMINI_USAGE["promptTokenCount"],
            }
            last = len(TEXT_PIECES) - 1
            chunks = [
                response(piece, "STOP" if i == last else None, GEMINI_USAGE if i == last else partial)
                for i, piece in enumerate(TEXT_PIECES)
            ]

            def pieces() -> Iterator[bytes]:
                for chunk in chunks:
                    yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()

            return self._stream("text/event-stream", pieces())
        self._json(404, {"error": {"code": 404, "message": f"no method {method}", "status": "NOT_FOUND"}})

    # -- Ollama -----------------------------------------------------------------------------
    def _ollama(self, endpoint: str, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if (status := self._error_status(model)) is not None:
            return self._json(status, {"error": f"fake {status}"})
        created = "2026-01-01T00:00:00.000000Z"
        timings = {
            "total_duration": 5_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_duration": 1_000_000,
            "eval_duration": 2_000_000,
        }
        if endpoint == "embed":
            inputs = body.get("input")
            count = len(inputs) if isinstance(inputs, list) else 1
            embeddings = [EMBEDDING for _ in range(count)]
            return self._json(
                200,
                {
                    "model": model,
                    "embeddings": embeddings,
                    **timings,
                    "prompt_eval_count": OLLAMA_USAGE["prompt_eval_count"],
                },
            )

        def piece_body(text: str, done: bool) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": created, "done": done}
            if endpoint == "chat":
                out["message"] = {"role": "assistant", "content": text}
            else:
                out["response"] = text
            if done:
                out.update(done_reason="stop", **timings, **OLLAMA_USAGE)
            return out

        if not body.get("stream", True):
            return self._json(200, piece_body(TEXT, True))
        lines = [piece_body(piece, False) for piece in TEXT_PIECES] + [piece_body("", True)]
        self._stream("application/x-ndjson", (json.dumps(line).encode() + b"\n" for line in lines))


@contextmanager
def provider_server() -> Iterator[FakeProviderServer]:
    """Starts the fake on 127.0.0.1 with a free port in a thread; stops it on exit."""
    recorder = FakeProviderServer(base_url="")
    handler = type("Handler", (_Handler,), {"recorder": recorder})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    recorder.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="fake-provider-server", daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def refused_url() -> str:
    """A loopback URL on which nothing listens, for connection-refused tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
