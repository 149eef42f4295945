// Command-line parsing shared by every `rag` subcommand, so that flags, --help and errors read the same
// everywhere. Options are `--name VALUE`, `--name=VALUE` or bare `--name` flags; the rest are positionals.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rag {

struct Option {
  std::string name;        // without dashes: "data" for --data
  std::string value_name;  // "DIR"; empty for a flag that takes no value
  std::string help;        // one line; mention the default
  bool repeatable = false; // may be given more than once (values collected in order)
};

struct CommandSpec {
  std::string name;        // "ingest", or "model info" for nested commands
  std::string positionals; // shown in usage: "PATH..."
  std::string summary;     // one paragraph shown by --help
  std::vector<Option> options;
};

// The --data option every command takes, and --help.
Option data_option();

class ParsedArgs {
 public:
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> get_all(const std::string& name) const;
  // Parses an integer or real value and checks its range; a bad value is an Error naming the flag.
  int64_t get_int(const std::string& name, int64_t fallback, int64_t min, int64_t max) const;
  double get_double(const std::string& name, double fallback, double min, double max) const;

  std::vector<std::string> positional;

 private:
  friend ParsedArgs parse_args(const CommandSpec&, int, char**);
  std::map<std::string, std::vector<std::string>> values_;
};

// Parses argv[0..argc) (argv[0] is the first argument after the command name, not the program).
// Throws Error(kInvalidArgument) for unknown options or a missing value, naming the command.
// "--help"/"-h" are always accepted and reported as has("help").
ParsedArgs parse_args(const CommandSpec& spec, int argc, char** argv);

std::string usage(const CommandSpec& spec);

// The data directory: --data, else $RAG_DATA, else ./rag-data.
std::string data_dir(const ParsedArgs& args);

}  // namespace rag
