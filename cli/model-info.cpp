// `rag model info FILE`: what a GGUF model is, from its metadata and tensor table, as text or JSON.
// The report is one table of fields (kFields); adding a line is adding a row. Values of an unexpected
// type are shown as they are rather than failing: this is the tool for looking at odd files.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "nn/gguf.h"

namespace rag::cli {
namespace {

// Keeps the table's order in --json output.
using json = nlohmann::ordered_json;

const CommandSpec& spec() {
  static const CommandSpec s = {
      "model info",
      "FILE",
      "Describes a GGUF model: architecture, size, parameter count, tensor types, context and embedding "
      "lengths, layers, heads, tokenizer, pooling and chat template.",
      {
          {"json", "", "print one JSON object instead of text"},
          {"tensors", "", "also list every tensor: name, type, shape, file offset and size in bytes"},
          {"metadata", "", "also list every metadata key with its value (long arrays abbreviated)"},
      },
  };
  return s;
}

constexpr size_t kArrayPreview = 8;  // array elements shown by --metadata before "..."

// Any metadata value as JSON; arrays longer than `max_elements` keep their first elements and a count.
json value_json(const nn::GgufValue& v, size_t max_elements) {
  if (const auto* u = std::get_if<uint64_t>(&v.value)) return *u;
  if (const auto* i = std::get_if<int64_t>(&v.value)) return *i;
  if (const auto* d = std::get_if<double>(&v.value)) {
    // A float32 widened to double prints as 9.999999747378752e-06; print the float's shortest form (1e-05).
    if (v.type == nn::GgufValueType::kFloat32) return std::stod(fmt::format("{}", static_cast<float>(*d)));
    return *d;
  }
  if (const auto* b = std::get_if<bool>(&v.value)) return *b;
  if (const auto* s = std::get_if<std::string>(&v.value)) return *s;
  const nn::GgufArray& array = v.as_array("metadata value");
  json out = json::array();
  for (size_t i = 0; i < array.values.size() && i < max_elements; ++i) out.push_back(value_json(array.values[i], max_elements));
  if (array.values.size() > max_elements) out.push_back(fmt::format("... {} values", array.values.size()));
  return out;
}

// The value under `key`, or null when absent.
json meta(const nn::GgufFile& file, const std::string& key) {
  const nn::GgufValue* v = file.find(key);
  return v ? value_json(*v, kArrayPreview) : json();
}

std::string arch_key(const nn::GgufFile& file, const std::string& suffix) {
  const nn::GgufValue* arch = file.find("general.architecture");
  const auto* name = arch ? std::get_if<std::string>(&arch->value) : nullptr;
  return (name ? *name : std::string("unknown")) + "." + suffix;
}

// llama.cpp's LLAMA_FTYPE numbers for the types we make; others are shown by number.
json file_type_json(const nn::GgufFile& file) {
  json v = meta(file, "general.file_type");
  if (!v.is_number_integer()) return v;
  static const std::map<int64_t, const char*> kNames = {
      {0, "all F32"}, {1, "mostly F16"}, {2, "mostly Q4_0"}, {7, "mostly Q8_0"}, {32, "mostly BF16"}};
  auto it = kNames.find(v.get<int64_t>());
  return it == kNames.end() ? json(fmt::format("type {}", v.get<int64_t>())) : json(it->second);
}

json pooling_json(const nn::GgufFile& file) {
  json v = meta(file, arch_key(file, "pooling_type"));
  if (!v.is_number_integer()) return v;
  static const char* const kNames[] = {"none", "mean", "cls", "last", "rank"};
  const int64_t id = v.get<int64_t>();
  return id >= 0 && id < 5 ? json(kNames[id]) : json(fmt::format("unknown ({})", id));
}

json vocab_size_json(const nn::GgufFile& file) {
  const nn::GgufValue* tokens = file.find("tokenizer.ggml.tokens");
  if (!tokens) return json();
  const auto* array = std::get_if<std::shared_ptr<nn::GgufArray>>(&tokens->value);
  return array && *array ? json((*array)->values.size()) : json("not an array");
}

json parameter_count(const nn::GgufFile& file) {
  // Tensors may overlap in a hostile file, so the sum is not bounded by the file size: saturate.
  int64_t total = 0;
  for (const auto& t : file.tensors())
    if (__builtin_add_overflow(total, t.element_count(), &total)) return json("more than 2^63");
  return total;
}

json tensor_types(const nn::GgufFile& file) {
  std::map<std::string, int64_t> counts;
  for (const auto& t : file.tensors()) ++counts[std::string(nn::tensor_type_name(t.type))];
  return counts;
}

struct Field {
  const char* key;    // JSON key
  const char* label;  // text label
  json (*get)(const nn::GgufFile&);
};

const Field kFields[] = {
    {"path", "file", [](const nn::GgufFile& f) { return json(f.path()); }},
    {"file_size", "size (bytes)", [](const nn::GgufFile& f) { return json(f.file_size()); }},
    {"gguf_version", "GGUF version", [](const nn::GgufFile& f) { return json(f.version()); }},
    {"architecture", "architecture", [](const nn::GgufFile& f) { return meta(f, "general.architecture"); }},
    {"name", "name", [](const nn::GgufFile& f) { return meta(f, "general.name"); }},
    {"file_type", "file type", file_type_json},
    {"parameters", "parameters", parameter_count},
    {"tensor_count", "tensors", [](const nn::GgufFile& f) { return json(f.tensors().size()); }},
    {"tensor_types", "tensor types", tensor_types},
    {"context_length", "context length", [](const nn::GgufFile& f) { return meta(f, arch_key(f, "context_length")); }},
    {"embedding_length", "embedding length",
     [](const nn::GgufFile& f) { return meta(f, arch_key(f, "embedding_length")); }},
    {"feed_forward_length", "feed-forward length",
     [](const nn::GgufFile& f) { return meta(f, arch_key(f, "feed_forward_length")); }},
    {"block_count", "layers", [](const nn::GgufFile& f) { return meta(f, arch_key(f, "block_count")); }},
    {"head_count", "heads", [](const nn::GgufFile& f) { return meta(f, arch_key(f, "attention.head_count")); }},
    {"head_count_kv", "KV heads", [](const nn::GgufFile& f) { return meta(f, arch_key(f, "attention.head_count_kv")); }},
    {"pooling_type", "pooling", pooling_json},
    {"tokenizer_model", "tokenizer", [](const nn::GgufFile& f) { return meta(f, "tokenizer.ggml.model"); }},
    {"vocab_size", "vocabulary size", vocab_size_json},
    {"chat_template", "chat template",
     [](const nn::GgufFile& f) { return json(f.find("tokenizer.chat_template") != nullptr); }},
};

std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_object()) {
    std::string out;
    for (const auto& [k, n] : v.items()) out += (out.empty() ? "" : ", ") + k + " " + n.dump();
    return out;
  }
  return v.dump();
}

std::string shape_text(const std::vector<int64_t>& ne) {
  std::string out;
  for (int64_t d : ne) out += (out.empty() ? "" : " x ") + std::to_string(d);
  return out;
}

}  // namespace

int cmd_model_info(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (args.positional.size() != 1) {
    std::fprintf(stderr, "rag model info: expected one model file\n\n%s", usage(spec()).c_str());
    return kExitUsage;
  }
  const auto file = nn::GgufFile::open(args.positional[0]);

  json report = json::object();
  for (const auto& field : kFields) report[field.key] = field.get(*file);
  if (args.has("metadata")) {
    json metadata = json::object();
    for (const auto& [key, value] : file->metadata()) metadata[key] = value_json(value, kArrayPreview);
    report["metadata"] = metadata;
  }
  if (args.has("tensors")) {
    json tensors = json::array();
    for (const auto& t : file->tensors())
      tensors.push_back({{"name", t.name},
                         {"type", nn::tensor_type_name(t.type)},
                         {"shape", t.ne},
                         {"file_offset", file->data_offset() + t.offset},
                         {"bytes", t.nbytes}});
    report["tensors"] = tensors;
  }

  if (args.has("json")) {
    // Metadata strings are not always valid UTF-8 (byte-level vocabularies): replace rather than throw.
    std::printf("%s\n", report.dump(2, ' ', false, json::error_handler_t::replace).c_str());
    return kExitOk;
  }
  for (const auto& field : kFields) {
    const json& v = report[field.key];
    std::printf("%-20s %s\n", field.label, v.is_null() ? "-" : text_of(v).c_str());
  }
  if (report.contains("metadata")) {
    std::printf("\nmetadata:\n");
    for (const auto& [key, value] : file->metadata())
      std::printf("  %-40s %s\n", key.c_str(),
                  value_json(value, kArrayPreview).dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  }
  if (report.contains("tensors")) {
    std::printf("\n%-40s %-6s %-24s %12s\n", "tensor", "type", "shape", "bytes");
    for (const auto& t : file->tensors())
      std::printf("%-40s %-6s %-24s %12zu\n", t.name.c_str(), std::string(nn::tensor_type_name(t.type)).c_str(),
                  shape_text(t.ne).c_str(), t.nbytes);
  }
  return kExitOk;
}

}  // namespace rag::cli
