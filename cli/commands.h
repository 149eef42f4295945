// The `rag` subcommands. Each takes the arguments after its name and returns the process exit status.
// Exit statuses are shared by every command: see kExit* below and README "Exit status".
#pragma once

namespace rag::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;       // the command could not do its job (message on stderr)
constexpr int kExitUsage = 2;        // bad arguments
constexpr int kExitPartial = 3;      // completed, but some inputs failed (e.g. ingest with failed files)
constexpr int kExitBusy = 75;        // another writer holds the data dir's lock (EX_TEMPFAIL, for cron)

// Help of the options every command that loads a generator takes.
constexpr const char* kKvMemHelp = "the generator's KV cache pool in MiB (default {})";
constexpr const char* kKvTypeHelp = "what the KV cache holds: auto (F16, or F32 for F32 models), f16 or f32";

int cmd_ask(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_ingest(int argc, char** argv);
int cmd_model(int argc, char** argv);
int cmd_rebuild(int argc, char** argv);
int cmd_search(int argc, char** argv);
int cmd_serve(int argc, char** argv);
int cmd_verify(int argc, char** argv);
// `rag model` subcommands (cli/model-*.cpp):
int cmd_model_embed(int argc, char** argv);
int cmd_model_import_llama2c(int argc, char** argv);
int cmd_model_info(int argc, char** argv);
int cmd_model_quantize(int argc, char** argv);
int cmd_model_tokenize(int argc, char** argv);


}  // namespace rag::cli
