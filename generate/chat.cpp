#include "generate/chat.h"

#include <algorithm>

#include "common/error.h"
#include "generate/model.h"

namespace rag::generate {
namespace {

// The template as a list of pieces: a marker is a control token's spelling, text is anything else.
struct Piece {
  bool marker;
  std::string text;
};

void check_role(const ChatMessage& m) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant")
    fail(Errc::kInvalidArgument, "chat: role '{}' is not one of system, user, assistant", m.role);
}

// Llama 3's template trims each message (Jinja `| trim`): spaces, tabs and newlines at both ends.
std::string trimmed(const std::string& s) {
  const char* space = " \t\n\r";
  const size_t begin = s.find_first_not_of(space);
  if (begin == std::string::npos) return {};
  return s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

std::vector<Piece> pieces(ChatTemplate t, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::vector<Piece> out;
  for (const ChatMessage& m : messages) check_role(m);
  if (t == ChatTemplate::kChatMl) {
    for (const ChatMessage& m : messages) {
      out.push_back({true, "<|im_start|>"});
      out.push_back({false, m.role + "\n" + m.content});
      out.push_back({true, "<|im_end|>"});
      out.push_back({false, "\n"});
    }
    if (add_generation_prompt) {
      out.push_back({true, "<|im_start|>"});
      out.push_back({false, "assistant\n"});
    }
  } else {
    out.push_back({true, "<|begin_of_text|>"});
    auto header = [&](const std::string& role) {
      out.push_back({true, "<|start_header_id|>"});
      out.push_back({false, role});
      out.push_back({true, "<|end_header_id|>"});
    };
    for (const ChatMessage& m : messages) {
      header(m.role);
      out.push_back({false, "\n\n" + trimmed(m.content)});
      out.push_back({true, "<|eot_id|>"});
    }
    if (add_generation_prompt) {
      header("assistant");
      out.push_back({false, "\n\n"});
    }
  }
  return out;
}

const nn::Tokenizer& require_tokenizer(const Model& model) {
  if (!model.tokenizer())
    fail(Errc::kUnsupported, "{}: the model file has no vocabulary (tokenizer.ggml.tokens)", model.file().path());
  return *model.tokenizer();
}

bool has_token(const nn::Tokenizer* tokenizer, std::string_view text) {
  return tokenizer && tokenizer->find(text) != nn::kNoToken;
}

}  // namespace

std::string_view chat_template_name(ChatTemplate t) { return t == ChatTemplate::kLlama3 ? "llama3" : "chatml"; }

ChatTemplate chat_template(const Model& model) {
  const std::string jinja = model.file().get_string("tokenizer.chat_template", "");
  if (jinja.find("<|im_start|>") != std::string::npos) return ChatTemplate::kChatMl;
  if (jinja.find("<|start_header_id|>") != std::string::npos) return ChatTemplate::kLlama3;
  // A template we do not recognise is not evidence either way; an absent one leaves the vocabulary to tell.
  if (jinja.empty() && !has_token(model.tokenizer(), "<|im_start|>") &&
      has_token(model.tokenizer(), "<|start_header_id|>") && has_token(model.tokenizer(), "<|eot_id|>"))
    return ChatTemplate::kLlama3;
  return ChatTemplate::kChatMl;
}

std::string apply_chat_template(ChatTemplate t, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const Piece& p : pieces(t, messages, add_generation_prompt)) out += p.text;
  return out;
}

std::string apply_chat_template(const Model& model, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
  return apply_chat_template(chat_template(model), messages, add_generation_prompt);
}

std::vector<int32_t> tokenize_chat(const Model& model, const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt) {
  const nn::Tokenizer& tokenizer = require_tokenizer(model);
  std::vector<int32_t> ids;
  // Text between two markers is encoded as one run, exactly as the tokenizer would see it in the whole
  // string (a BPE merge may cross from a role name into the content).
  std::string run;
  auto flush = [&] {
    if (run.empty()) return;
    const std::vector<int32_t> part = tokenizer.encode(run, false, false);
    ids.insert(ids.end(), part.begin(), part.end());
    run.clear();
  };
  for (const Piece& p : pieces(chat_template(model), messages, add_generation_prompt)) {
    const int32_t id = p.marker ? tokenizer.find(p.text) : nn::kNoToken;
    if (id == nn::kNoToken) {
      run += p.text;
      continue;
    }
    flush();
    ids.push_back(id);
  }
  flush();
  return ids;
}

std::vector<int32_t> end_of_turn_tokens(const Model& model) {
  const nn::Tokenizer& tokenizer = require_tokenizer(model);
  std::vector<int32_t> ids;
  const char* end = chat_template(model) == ChatTemplate::kLlama3 ? "<|eot_id|>" : "<|im_end|>";
  for (int32_t id : {tokenizer.find(end), tokenizer.eos()})
    if (id != nn::kNoToken && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

}  // namespace rag::generate
