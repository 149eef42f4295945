#include "common/args.h"

#include <charconv>
#include <cstdlib>

#include "common/error.h"

namespace rag {

Option data_option() {
  return {"data", "DIR", "data directory (default: $RAG_DATA, else ./rag-data)"};
}

std::string ParsedArgs::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::get_all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t ParsedArgs::get_int(const std::string& name, int64_t fallback, int64_t min, int64_t max) const {
  if (!has(name)) return fallback;
  std::string text = get(name);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    fail(Errc::kInvalidArgument, "--{}: '{}' is not a whole number", name, text);
  if (value < min || value > max)
    fail(Errc::kInvalidArgument, "--{}: {} is out of range [{}, {}]", name, value, min, max);
  return value;
}

double ParsedArgs::get_double(const std::string& name, double fallback, double min, double max) const {
  if (!has(name)) return fallback;
  std::string text = get(name);
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    fail(Errc::kInvalidArgument, "--{}: '{}' is not a number", name, text);
  if (!(value >= min && value <= max))
    fail(Errc::kInvalidArgument, "--{}: {} is out of range [{}, {}]", name, value, min, max);
  return value;
}

ParsedArgs parse_args(const CommandSpec& spec, int argc, char** argv) {
  ParsedArgs out;
  bool options_done = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (options_done || arg.size() < 2 || arg[0] != '-' || arg == "-") {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      out.values_["help"];
      continue;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::string value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      inline_value = true;
    }
    const Option* option = nullptr;
    for (const auto& o : spec.options)
      if (o.name == name) option = &o;
    if (!option)
      fail(Errc::kInvalidArgument, "rag {}: unknown option '{}' (see rag {} --help)", spec.name, arg, spec.name);
    if (option->value_name.empty()) {
      if (inline_value) fail(Errc::kInvalidArgument, "rag {}: --{} takes no value", spec.name, name);
    } else if (!inline_value) {
      if (i + 1 >= argc) fail(Errc::kInvalidArgument, "rag {}: --{} needs a value {}", spec.name, name, option->value_name);
      value = argv[++i];
    }
    auto& slot = out.values_[name];
    if (!slot.empty() && !option->repeatable) slot.clear();  // the last one wins
    slot.push_back(value);
  }
  return out;
}

std::string usage(const CommandSpec& spec) {
  std::string text = fmt::format("usage: rag {} [options] {}\n\n{}\n", spec.name, spec.positionals, spec.summary);
  if (!spec.options.empty()) text += "\noptions:\n";
  for (const auto& o : spec.options) {
    std::string left = "--" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
    text += fmt::format("  {:<22} {}{}\n", left, o.help, o.repeatable ? " (repeatable)" : "");
  }
  text += fmt::format("  {:<22} {}\n", "--help", "show this help");
  return text;
}

std::string data_dir(const ParsedArgs& args) {
  if (args.has("data")) return args.get("data");
  if (const char* env = std::getenv("RAG_DATA"); env && *env) return env;
  return "rag-data";
}

}  // namespace rag
