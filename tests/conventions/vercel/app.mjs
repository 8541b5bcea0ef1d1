// The Vercel AI SDK, with its own telemetry on, making the convention tests' calls against the fake
// provider server and exporting its spans over OTLP/HTTP (protobuf) to a spanmeter collector.
//
//   node app.mjs [6|5|4]   (env: FAKE_PROVIDER_URL, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
//                            PRINT_SPANS=1 also prints every span to stdout)
//
// 6 is the `ai` package pinned in package.json; 5 and 4 are the same calls through the npm aliases
// `ai-v5` / `ai-v4` and the provider packages of their line.

import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { ConsoleSpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

const SDKS = {
  6: { ai: "ai", openai: "@ai-sdk/openai", anthropic: "@ai-sdk/anthropic" },
  5: { ai: "ai-v5", openai: "@ai-sdk/openai-v2", anthropic: "@ai-sdk/anthropic-v2" },
  4: { ai: "ai-v4", openai: "@ai-sdk/openai-v1", anthropic: "@ai-sdk/anthropic-v1" },
};

const version = process.argv[2] ?? "6";
const sdk = SDKS[version];
if (!sdk) {
  console.error(`unknown AI SDK major version ${version}: one of ${Object.keys(SDKS).join(", ")}`);
  process.exit(2);
}
const base = (process.env.FAKE_PROVIDER_URL ?? "").replace(/\/$/, "");
if (!base) {
  console.error("FAKE_PROVIDER_URL is not set");
  process.exit(2);
}

const processors = [new SimpleSpanProcessor(new OTLPTraceExporter())];
if (process.env.PRINT_SPANS) processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": process.env.OTEL_SERVICE_NAME ?? `vercel-ai-v${version}` }),
  spanProcessors: processors,
});
provider.register();

const { generateText, streamText, embed } = await import(sdk.ai);
const { createOpenAI } = await import(sdk.openai);
const { createAnthropic } = await import(sdk.anthropic);

// `compatibility: "strict"` makes the v4 line's OpenAI provider ask for usage in streams, as its
// default `openai` instance does (later lines always do and ignore the option).
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: "k", compatibility: "strict" });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey: "k" });
const telemetry = (feature) => ({
  isEnabled: true,
  functionId: feature,
  metadata: { feature, userId: "user-7", sessionId: "session-3", team: "growth" },
});

// openai.chat: Chat Completions (the v5+ default `openai(id)` is the Responses API).
await generateText({
  model: openai.chat("gpt-4o-mini"),
  prompt: "hi",
  experimental_telemetry: telemetry("vercel-generate"),
});

const stream = streamText({
  model: openai.chat("gpt-4o-mini"),
  prompt: "hi",
  experimental_telemetry: telemetry("vercel-stream"),
});
let streamed = "";
for await (const piece of stream.textStream) streamed += piece;
if (!streamed) throw new Error("streamText produced no text");

await generateText({
  model: anthropic("claude-sonnet-4-5"),
  prompt: "hi",
  maxTokens: 100, // v4
  maxOutputTokens: 100, // v5+
  experimental_telemetry: telemetry("vercel-anthropic"),
});

await embed({
  model: openai.embedding("text-embedding-3-small"),
  value: "hi",
  experimental_telemetry: telemetry("vercel-embed"),
});

await provider.shutdown(); // flushes the exporter
