// `rag model quantize IN OUT --type q8_0|q4_0|f16`: rewrites a GGUF model with its weight matrices in a
// smaller type. Which tensors change follows llama.cpp's llama-quant.cpp, roughly:
//  - only 2-D tensors named "*.weight" are converted; norms, biases and other 1-D tensors stay as they
//    are (they are tiny and precision-sensitive);
//  - position embeddings, BERT token-type embeddings and MoE gate inputs stay, as llama.cpp leaves them;
//  - tensors already quantized are copied as they are: requantizing compounds the rounding error;
//  - with q4_0, the output projection (or the token embedding when the model ties it to the output) gets
//    Q8_0: llama.cpp gives it Q6_K because it is the most error-sensitive matrix, and Q8_0 is the
//    nearest type we have. The token embedding otherwise takes the target type, as in llama.cpp (its
//    rows are looked up, not multiplied, so its error stays per token);
//  - a matrix whose rows are not whole 32-element blocks becomes F16, llama.cpp's last fallback.
// general.file_type is set to llama.cpp's LLAMA_FTYPE number for the target and the file is written
// atomically (temporary file, fsync, rename).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/log.h"
#include "nn/gguf.h"

namespace rag::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s = {
      "model quantize",
      "IN OUT",
      "Writes OUT, a copy of the GGUF model IN with its 2-D weight matrices converted to --type. Norms, "
      "biases and 1-D tensors stay F32; with q4_0 the output matrix gets q8_0. Prints the sizes before and "
      "after.",
      {
          {"type", "TYPE", "target type: q8_0, q4_0 or f16 (required)"},
      },
  };
  return s;
}

struct Target {
  const char* name;
  nn::TensorType type;
  uint32_t file_type;  // llama.cpp's LLAMA_FTYPE_MOSTLY_*
};

constexpr Target kTargets[] = {
    {"q8_0", nn::TensorType::kQ8_0, 7},
    {"q4_0", nn::TensorType::kQ4_0, 2},
    {"f16", nn::TensorType::kF16, 1},
};

constexpr uint32_t kQuantizationVersion = 2;  // ggml's GGML_QNT_VERSION, which llama.cpp writes

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_quantized(nn::TensorType type) { return nn::block_size(type) > 1; }

nn::TensorType choose_type(const nn::GgufTensor& t, nn::TensorType target, bool has_output) {
  if (t.ne.size() != 2 || !ends_with(t.name, ".weight")) return t.type;
  if (t.name.find("_norm.weight") != std::string::npos || t.name.find("ffn_gate_inp.weight") != std::string::npos ||
      t.name == "position_embd.weight" || t.name == "token_types.weight")
    return t.type;
  if (is_quantized(t.type)) return t.type;
  nn::TensorType type = target;
  const bool is_output = t.name == "output.weight" || (!has_output && t.name == "token_embd.weight");
  if (target == nn::TensorType::kQ4_0 && is_output) type = nn::TensorType::kQ8_0;
  if (t.ne[0] % static_cast<int64_t>(nn::block_size(type)) != 0) type = nn::TensorType::kF16;
  return type;
}

// Converts tensor `t` (F32, F16 or BF16) to `type`, row by row through F32. Rows are copied out first:
// the mapping only guarantees the file's alignment, which may be 1.
std::vector<uint8_t> convert(const nn::GgufTensor& t, nn::TensorType type) {
  const int64_t row = t.ne[0];
  const int64_t rows = row == 0 ? 0 : t.element_count() / row;
  const size_t in_row = nn::row_bytes(t.type, row);
  const size_t out_row = nn::row_bytes(type, row);
  std::vector<uint8_t> out(out_row * static_cast<size_t>(rows));
  std::vector<uint8_t> raw(in_row);
  std::vector<float> values(static_cast<size_t>(row));
  const auto* in = static_cast<const uint8_t*>(t.data);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(raw.data(), in + static_cast<size_t>(r) * in_row, in_row);
    nn::dequantize_row(t.type, raw.data(), values.data(), row);
    nn::quantize_row(type, values.data(), out.data() + static_cast<size_t>(r) * out_row, row);
  }
  return out;
}

}  // namespace

int cmd_model_quantize(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (args.positional.size() != 2) {
    std::fprintf(stderr, "rag model quantize: expected an input and an output file\n\n%s", usage(spec()).c_str());
    return kExitUsage;
  }
  const std::string type_name = args.get("type");
  const Target* target = nullptr;
  for (const auto& t : kTargets)
    if (type_name == t.name) target = &t;
  if (!target)
    fail(Errc::kInvalidArgument, "rag model quantize: --type '{}' is not one of q8_0, q4_0, f16", type_name);

  const std::string& in_path = args.positional[0];
  const std::string& out_path = args.positional[1];
  const auto in = nn::GgufFile::open(in_path);

  nn::GgufWriter writer;
  for (const auto& [key, value] : in->metadata())
    if (key != "general.file_type" && key != "general.quantization_version") writer.set(key, value);
  writer.set_uint32("general.file_type", target->file_type);
  if (is_quantized(target->type)) writer.set_uint32("general.quantization_version", kQuantizationVersion);

  const bool has_output = in->find_tensor("output.weight") != nullptr;
  int converted = 0;
  for (const auto& t : in->tensors()) {
    const nn::TensorType type = choose_type(t, target->type, has_output);
    if (type == t.type) {
      writer.add_tensor(t.name, t.type, t.ne, t.data);
      continue;
    }
    const std::vector<uint8_t> bytes = convert(t, type);
    writer.add_tensor(t.name, type, t.ne, bytes.data());
    spdlog::debug("quantize: {} {} -> {}", t.name, nn::tensor_type_name(t.type), nn::tensor_type_name(type));
    ++converted;
  }
  writer.write(out_path);

  const auto out = nn::GgufFile::open(out_path);
  const double before = static_cast<double>(in->file_size());
  const double after = static_cast<double>(out->file_size());
  std::printf("%s: %llu bytes (%.2f MiB)\n%s: %llu bytes (%.2f MiB), %.1f%% of the input; %d of %zu tensors "
              "converted for --type %s\n",
              in_path.c_str(), static_cast<unsigned long long>(in->file_size()), before / (1 << 20),
              out_path.c_str(), static_cast<unsigned long long>(out->file_size()), after / (1 << 20),
              before > 0 ? 100.0 * after / before : 0.0, converted, in->tensors().size(), target->name);
  return kExitOk;
}

}  // namespace rag::cli
