// Drives `rag serve` with the official OpenAI client (npm `openai`). Env: RAG_BASE_URL (http://127.0.0.1:PORT/v1),
// RAG_KEY, RAG_EMBED_MODEL. Exits non-zero with a message on the first failed check.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.RAG_BASE_URL, apiKey: process.env.RAG_KEY, maxRetries: 0 });
const question = "How many days do I have to submit expenses?";

// Chat completion through model "rag": an answer with citations that name the sources given.
const chat = await client.chat.completions.create({
  model: "rag",
  messages: [{ role: "user", content: question }],
  max_tokens: 32,
});
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
assert.ok(Array.isArray(chat.citations), "rag chat completions carry citations");
for (const c of chat.citations) assert.ok(c.path && c.title && c.n >= 1, JSON.stringify(c));
assert.ok(chat.usage.prompt_tokens > 0);

// Streaming chat completion: chunks, then a final chunk with finish_reason and citations.
const stream = await client.chat.completions.create({
  model: "rag",
  messages: [{ role: "user", content: question }],
  max_tokens: 32,
  stream: true,
});
let text = "";
let finish = null;
let citations = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks++;
  assert.equal(chunk.object, "chat.completion.chunk");
  text += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  if (chunk.citations) citations = chunk.citations;
}
assert.ok(chunks >= 2, `only ${chunks} chunks`);
assert.ok(finish === "stop" || finish === "length", `finish_reason ${finish}`);
assert.ok(Array.isArray(citations));
const markers = new Set([...text.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1])));
assert.deepEqual([...markers].sort(), citations.map((c) => c.n).sort(), `markers in "${text}" vs citations`);

// Direct chat with the generator model (no retrieval).
const models = await client.models.list();
const generator = models.data.find((m) => m.id.endsWith(".gguf") && m.id !== process.env.RAG_EMBED_MODEL);
assert.ok(generator, "the generator is listed");
const direct = await client.chat.completions.create({ model: generator.id, messages: [{ role: "user", content: "hello" }], max_tokens: 8 });
assert.equal(direct.citations, undefined);

// Embeddings: the client asks for base64 by default and decodes it; float on request.
const emb = await client.embeddings.create({ model: "embedder", input: ["travel policy", "cat"] });
assert.equal(emb.data.length, 2);
const dim = emb.data[0].embedding.length;
assert.ok(dim > 0);
const norm = Math.sqrt(emb.data[0].embedding.reduce((s, x) => s + x * x, 0));
assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
const floats = await client.embeddings.create({ model: "embedder", input: "travel policy", encoding_format: "float" });
for (let i = 0; i < dim; i++) assert.ok(Math.abs(floats.data[0].embedding[i] - emb.data[0].embedding[i]) < 1e-6);

// Errors arrive in OpenAI's shape, so the client raises its typed errors.
await assert.rejects(
  client.chat.completions.create({ model: "rag", messages: [{ role: "user", content: question }], max_tokens: 100000 }),
  (e) => e instanceof OpenAI.BadRequestError && e.code === "too_many_tokens",
);
const stranger = new OpenAI({ baseURL: process.env.RAG_BASE_URL, apiKey: "not-a-key-0000000000", maxRetries: 0 });
await assert.rejects(stranger.models.list(), (e) => e instanceof OpenAI.AuthenticationError);

console.log("openai client: chat, streaming chat, embeddings ok");
