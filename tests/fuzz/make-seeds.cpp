// Writes the seed corpus of every fuzz target: make-fuzz-seeds OUT writes OUT/<target>/seed-NNN.
// Seeds are built here (GGUF files through nn::GgufWriter, a minimal PDF with its cross-reference table
// computed, requests, manifests) or taken from files in the repository (data/sample) and the shared
// tokenizer fixtures' inputs, so no binary blob is committed.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "nn/gguf.h"

namespace fs = std::filesystem;
using namespace rag;

namespace {

fs::path g_out;

void seed(const std::string& target, const std::string& bytes) {
  fs::path dir = g_out / target;
  fs::create_directories(dir);
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  char name[32];
  std::snprintf(name, sizeof name, "seed-%03zu", n);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void sample_files(const std::string& target, const std::string& ext) {
  for (const auto& e : fs::recursive_directory_iterator(fs::path(RAG_SOURCE_DIR) / "data/sample"))
    if (e.is_regular_file() && e.path().extension() == ext) seed(target, read(e.path()));
}

// A one-page PDF with a title and text; the xref offsets are computed so poppler reads it without repair.
std::string tiny_pdf(const std::string& text, const std::string& title) {
  std::vector<std::string> objects = {
      "<< /Type /Catalog /Pages 2 0 R >>",
      "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
      "",
      "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
      "<< /Title (" + title + ") >>",
  };
  const std::string content = "BT /F1 12 Tf 20 150 Td (" + text + ") Tj 0 -20 Td (Second line.) Tj ET";
  objects[3] = "<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "\nendstream";
  std::string pdf = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t off : offsets) {
    char line[24];
    std::snprintf(line, sizeof line, "%010zu 00000 n \n", off);
    pdf += line;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R /Info 6 0 R >>\nstartxref\n" +
         std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

std::string gguf_bytes(const nn::GgufWriter& w) {
  const fs::path tmp = g_out / "tmp.gguf";
  w.write(tmp.string());
  std::string bytes = read(tmp);
  fs::remove(tmp);
  return bytes;
}

void gguf_seeds() {
  {
    nn::GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_uint32("general.alignment", 32);
    w.set_int32("llama.block_count", 1);
    w.set_float32("llama.rope.freq_base", 10000.0f);
    w.set_bool("fuzz.flag", true);
    w.set_uint64("fuzz.big", 1ull << 40);
    w.set_float32_array("fuzz.floats", {0.5f, -1.0f});
    w.set_int32_array("fuzz.ints", {1, 2, 3});
    std::vector<float> f32(64, 0.25f);
    w.add_tensor_f32("a.weight", nn::TensorType::kF32, {8, 8}, f32.data());
    w.add_tensor_f32("b.weight", nn::TensorType::kQ8_0, {32, 2}, f32.data());
    w.add_tensor_f32("c.weight", nn::TensorType::kQ4_0, {32}, f32.data());
    w.add_tensor_f32("d.weight", nn::TensorType::kF16, {4}, f32.data());
    seed("gguf", gguf_bytes(w));
  }
  nn::GgufWriter empty;
  seed("gguf", gguf_bytes(empty));
  {
    nn::GgufWriter w;  // WordPiece
    w.set_string("tokenizer.ggml.model", "bert");
    w.set_string_array("tokenizer.ggml.tokens", {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\xe2\x96\x81hello", "\xe2\x96\x81world", "##s", "!"});
    w.set_int32_array("tokenizer.ggml.token_type", {3, 2, 3, 3, 3, 1, 1, 1, 1});
    w.set_uint32("tokenizer.ggml.unknown_token_id", 1);
    w.set_uint32("tokenizer.ggml.cls_token_id", 2);
    w.set_uint32("tokenizer.ggml.seperator_token_id", 3);
    w.set_uint32("tokenizer.ggml.padding_token_id", 0);
    seed("gguf", gguf_bytes(w));
  }
  {
    nn::GgufWriter w;  // byte-level BPE
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "gpt2");
    w.set_string_array("tokenizer.ggml.tokens", {"H", "e", "l", "o", "He", "ll", "\xc4\xa0", "w", "<|endoftext|>"});
    w.set_string_array("tokenizer.ggml.merges", {"H e", "l l"});
    w.set_int32_array("tokenizer.ggml.token_type", {1, 1, 1, 1, 1, 1, 1, 1, 3});
    w.set_uint32("tokenizer.ggml.bos_token_id", 8);
    w.set_uint32("tokenizer.ggml.eos_token_id", 8);
    seed("gguf", gguf_bytes(w));
  }
  {
    nn::GgufWriter w;  // SentencePiece
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x41>", "\xe2\x96\x81", "\xe2\x96\x81H", "ello", "H"});
    w.set_float32_array("tokenizer.ggml.scores", {0, 0, 0, 0, -1, -2, -3, -4});
    w.set_int32_array("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1, 1});
    w.set_uint32("tokenizer.ggml.bos_token_id", 1);
    w.set_uint32("tokenizer.ggml.eos_token_id", 2);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    seed("gguf", gguf_bytes(w));
  }
}

// The fixtures' inputs, each behind a flags byte (see tokenizer.h): plain, with specials, parsing specials.
void tokenizer_seeds(const std::string& target, const std::vector<std::string>& vocabs) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t v = 0; v < vocabs.size(); ++v) {
    const std::string raw = read(std::string(RAG_SHARED_DIR) + "/fixtures/vocab/ggml-vocab-" + vocabs[v] + ".gguf.inp");
    size_t i = 0;
    for (size_t pos = 0; pos < raw.size(); ++i) {
      size_t next = raw.find(sep, pos);
      std::string input = raw.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
      pos = next == std::string::npos ? raw.size() : next + sep.size();
      const uint8_t flags[] = {0x00, 0x10, 0x30, 0x70 | 0x80};
      seed(target, std::string(1, static_cast<char>(flags[i % 4] + v)) + input);
    }
  }
  seed(target, std::string(1, '\x30') + "<s>[CLS]<|endoftext|><|im_start|>user\nhi<|im_end|></s>");
}

std::string request(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& extra = "") {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra;
  if (!body.empty()) r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "Connection: close\r\n\r\n" + body;
}

void http_seeds() {
  const std::string auth = "Authorization: Bearer fuzz-user-key-0123456789\r\n";
  const std::vector<std::string> requests = {
      request("POST", "/v1/ask", R"({"question": "what is the on-call escalation?", "sources": 3, "max_tokens": 16, "temperature": 0.5, "seed": 7, "stream": false})"),
      request("POST", "/v1/ask", R"({"question": "per diem", "stream": true})"),
      request("POST", "/v1/search", R"({"query": "travel per diem", "k": 5})"),
      request("POST", "/v1/chat/completions", R"({"model": "rag", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_completion_tokens": 8, "top_p": 0.9, "stop": ["\n", "END"], "stream": true})"),
      request("POST", "/v1/chat/completions", R"({"model": "gen", "messages": [{"role": "user", "content": "hello"}], "stop": "x"})"),
      request("POST", "/v1/embeddings", R"({"input": ["a", "b"], "encoding_format": "base64", "model": "e"})"),
      request("POST", "/v1/documents", R"({"name": "a.txt", "content_base64": "aGVsbG8=", "acl": ["user:ann"]})"),
      request("GET", "/v1/documents", ""),
      request("DELETE", "/v1/documents/12", ""),
      request("GET", "/v1/models", ""),
      request("GET", "/healthz", ""),
      request("GET", "/readyz", ""),
      request("GET", "/metrics", ""),
      request("POST", "/v1/ask", R"({"question": "x"})", "Content-Encoding: gzip\r\n"),
      "POST /v1/ask HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"q\":\r\n3\r\n 1}\r\n0\r\n\r\n",
  };
  for (const std::string& r : requests) {
    seed("http-request", "\x01" + r);  // the server without keys
    seed("http-request", "\x00" + r.substr(0, r.find("\r\n") + 2) + auth + r.substr(r.find("\r\n") + 2));
  }
}

void manifest_seeds() {
  const std::string valid = R"({"format": "rag-vectors", "version": 1, "change_counter": 12, "embedder": "bge/cls/d384/0123abcd",
 "dim": 384, "vectors": 10, "rows": 12, "kind": "hnsw", "params": {"m": 32, "ef_construction": 200},
 "file": "vectors.faiss", "xxh3_128": "0123456789abcdef0123456789abcdef"})";
  seed("manifest", valid);
  std::string flat = valid;
  flat.replace(flat.find("hnsw"), 4, "flat");
  seed("manifest", flat);
  std::string ivf = valid;
  ivf.replace(ivf.find("hnsw"), 4, "ivf");
  seed("manifest", ivf);
  seed("manifest", "{}");
  seed("manifest", "[1, 2]");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make-fuzz-seeds OUT_DIR\n";
    return 2;
  }
  g_out = argv[1];
  fs::create_directories(g_out);

  seed("pdf", tiny_pdf("Hello from a tiny PDF.", "Tiny"));
  seed("pdf", tiny_pdf("Caf\\351 \\(escaped\\) text", "\\376\\377\\000T"));
  sample_files("pdf", ".pdf");

  sample_files("html", ".html");
  seed("html", "<!doctype html><html><head><title>T &amp; t</title><script>x<y</script></head><body><h1>Head</h1>"
               "<p>One <b>two</b>&nbsp;&#x263A;</p><ul><li>a<ul><li>b</li></ul></li></ul><table><tr><th>k</th><th>v</th>"
               "</tr><tr><td>1</td><td>2</td></tr></table><pre>  code\n  </pre><!-- c --></body></html>");
  seed("html", "<meta charset=\"windows-1252\"><p>caf\xe9 \x93quoted\x94</p>");

  sample_files("markdown", ".md");
  seed("markdown", "# Title\n\nSome *emphasis* and `code` and [a link](http://x).\n\n## Sub\n\n- item\n  - nested\n1. one\n\n"
                   "| a | b |\n|---|---|\n| 1 | 2 |\n\n```cpp\nint x;\n```\n\n> quote\n\nSetext\n===\n");
  seed("markdown", "---\ntitle: Front matter\n---\n\nText<br>with <b>html</b>.\n");

  sample_files("text", ".txt");
  seed("text", "Plain text.\n\nSecond paragraph with a very long line that goes on.\r\n\r\n\tIndented.\n");
  seed("text", "caf\xe9 latin-1 text\n");
  seed("text", std::string("\xff\xfeh\0i\0", 6));

  gguf_seeds();
  tokenizer_seeds("tokenizer-wordpiece", {"bert-bge"});
  tokenizer_seeds("tokenizer-bpe", {"gpt-2", "deepseek-coder"});
  tokenizer_seeds("tokenizer-spm", {"llama-spm", "phi-3"});
  http_seeds();
  manifest_seeds();
  return 0;
}
