// Principals and the names of modes and fusions. See retrieve.h "Permissions".
#include <algorithm>
#include <cstdlib>

#include "common/error.h"
#include "retrieve/retrieve.h"

namespace rag::retrieve {
namespace {

constexpr size_t kMaxNameBytes = 200;
constexpr std::string_view kForm = "want USER or USER:GROUP,GROUP... (like ann or ann:eng,ops)";

// A user or group name: what index/ accepts in a principal after its "user:"/"group:" prefix, minus the two
// separators of the --as syntax.
void check_name(std::string_view name, std::string_view what, std::string_view text) {
  if (name.empty()) fail(Errc::kInvalidArgument, "principal '{}': empty {}; {}", text, what, kForm);
  if (name.size() > kMaxNameBytes)
    fail(Errc::kInvalidArgument, "principal '{}': {} is {} bytes, more than {}", text, what, name.size(),
         kMaxNameBytes);
  for (unsigned char c : name) {
    if (c <= ' ' || c == 0x7f || c == ':' || c == ',')
      fail(Errc::kInvalidArgument, "principal '{}': {} '{}' holds a space, control character, ':' or ','; {}", text,
           what, name, kForm);
  }
}

}  // namespace

Principal parse_principal(std::string_view text) {
  Principal p;
  size_t colon = text.find(':');
  p.user = std::string(text.substr(0, colon));
  check_name(p.user, "user", text);
  if (colon == std::string_view::npos) return p;
  std::string_view rest = text.substr(colon + 1);
  if (rest.empty()) fail(Errc::kInvalidArgument, "principal '{}': no group after ':'; {}", text, kForm);
  for (;;) {
    size_t comma = rest.find(',');
    std::string_view group = rest.substr(0, comma);
    check_name(group, "group", text);
    p.groups.emplace_back(group);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return p;
}

std::vector<std::string> principal_strings(const Principal& principal, std::string_view default_group) {
  std::string text = principal.user;
  check_name(principal.user, "user", text);
  std::vector<std::string> out = {"user:" + principal.user};
  for (const auto& group : principal.groups) {
    check_name(group, "group", text);
    out.push_back("group:" + group);
    if (!default_group.empty() && group == default_group) out.emplace_back(index::kNoAclPrincipal);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string default_group_from_env() {
  const char* env = std::getenv("RAG_DEFAULT_GROUP");
  return env && *env ? std::string(env) : std::string(kDefaultGroup);
}

std::string_view mode_name(Mode mode) {
  switch (mode) {
    case Mode::kBm25: return "bm25";
    case Mode::kDense: return "dense";
    case Mode::kHybrid: return "hybrid";
  }
  return "?";
}

Mode parse_mode(std::string_view name) {
  for (Mode m : {Mode::kBm25, Mode::kDense, Mode::kHybrid})
    if (name == mode_name(m)) return m;
  fail(Errc::kInvalidArgument, "mode '{}': want bm25, dense or hybrid", name);
}

std::string_view fusion_name(Fusion fusion) { return fusion == Fusion::kRrf ? "rrf" : "weighted"; }

Fusion parse_fusion(std::string_view name) {
  if (name == "weighted") return Fusion::kWeighted;
  if (name == "rrf") return Fusion::kRrf;
  fail(Errc::kInvalidArgument, "fusion '{}': want weighted or rrf", name);
}

}  // namespace rag::retrieve
