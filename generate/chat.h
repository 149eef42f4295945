// Chat templates: a conversation (system, user and assistant messages) as the prompt text a chat model was
// trained on, and as token ids with the template's control tokens as their special ids.
//
//   ChatML (Qwen2, many others)  <|im_start|>system\nYou answer.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n
//                                <|im_start|>assistant\n                          (the generation prompt)
//   Llama 3                      <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou answer.<|eot_id|>
//                                <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
//                                <|start_header_id|>assistant<|end_header_id|>\n\n
//
// Which one: the GGUF's tokenizer.chat_template (a Jinja template) when it is recognisably one of these by
// its marker strings (Jinja itself is not run); without that key, the one whose control tokens the
// vocabulary has; ChatML otherwise.
//
// Message content is data: tokenize_chat() encodes it with control-token spellings kept as text, so a
// document quoted in a prompt cannot close a turn or forge a role. Only the template's own markers become
// control ids.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "generate/generate.h"

namespace rag::generate {

enum class ChatTemplate { kChatMl, kLlama3 };

struct ChatMessage {
  std::string role;     // "system", "user" or "assistant"
  std::string content;  // any text (UTF-8)
};

// The template `model` uses (see the top of this file).
ChatTemplate chat_template(const Model& model);
std::string_view chat_template_name(ChatTemplate t);   // "chatml", "llama3"

// The prompt text. With add_generation_prompt, ends with the opening of an assistant turn for the model to
// complete. Throws Error(kInvalidArgument) for a role other than system, user and assistant.
std::string apply_chat_template(ChatTemplate t, const std::vector<ChatMessage>& messages, bool add_generation_prompt);
std::string apply_chat_template(const Model& model, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt);

// apply_chat_template's text as token ids: each template marker as its control id (text when the vocabulary
// lacks it), the text between markers through the tokenizer with control spellings left as text. For
// byte-level BPE vocabularies (Qwen2, Llama 3) this equals encoding the whole text with specials parsed
// when no content spells a control token. Adds no BOS of its own (Llama 3's template starts with it). Throws Error(kUnsupported) when the model has no vocabulary.
std::vector<int32_t> tokenize_chat(const Model& model, const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt);

// Ids that end an assistant turn under the model's template (<|im_end|> or <|eot_id|>, plus the vocabulary's
// EOS), present in the vocabulary: add them to GenerateOptions::stop_tokens.
std::vector<int32_t> end_of_turn_tokens(const Model& model);

}  // namespace rag::generate
