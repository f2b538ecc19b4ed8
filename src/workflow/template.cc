// `${{ }}` placeholders: splitting strings into literal and expression pieces, and Template.
#include <cstring>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

struct Piece {
  bool is_expr = false;
  std::string_view text;  // literal text, or the program between `${{` and `}}`
};

// Finds the `}}` that closes a placeholder whose program starts at `from`. jq programs contain
// braces and strings of their own ({a: "}}"}), so braces are counted outside string literals;
// the first `}}` at depth zero closes. npos when unterminated.
std::size_t find_close(std::string_view text, std::size_t from) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = from; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skips the escaped character, including the `(` of an interpolation
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (depth == 0 && text.substr(i, 2) == "}}") {
      return i;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}') {
      --depth;
    }
  }
  return std::string_view::npos;
}

Result<std::vector<Piece>> split(std::string_view text) {
  std::vector<Piece> pieces;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t open = text.find("${{", pos);
    if (open == std::string_view::npos) {
      pieces.push_back({false, text.substr(pos)});
      break;
    }
    if (open > pos) {
      pieces.push_back({false, text.substr(pos, open - pos)});
    }
    const std::size_t close = find_close(text, open + 3);
    if (close == std::string_view::npos) {
      return invalid_argument_error("unterminated '${{' (close it with '}}')");
    }
    pieces.push_back({true, internal::trim(text.substr(open + 3, close - open - 3))});
    pos = close + 2;
  }
  return pieces;
}

}  // namespace

std::optional<std::string_view> standalone_expression(std::string_view text) {
  const std::string_view trimmed = internal::trim(text);
  if (!trimmed.starts_with("${{")) {
    return std::nullopt;
  }
  Result<std::vector<Piece>> pieces = split(trimmed);
  if (!pieces || pieces->size() != 1 || !pieces->front().is_expr) {
    return std::nullopt;
  }
  return pieces->front().text;
}

namespace internal {

std::string_view expression_program(std::string_view text) {
  std::optional<std::string_view> program = standalone_expression(text);
  return program ? *program : text;
}

}  // namespace internal

// The compiled mirror of a template's JSON value.
struct TemplateNode {
  enum class Kind { kLiteral, kStandalone, kInterpolated, kObject, kArray };
  struct Part {
    std::string literal;
    std::optional<Expr> expr;
  };
  Kind kind = Kind::kLiteral;
  std::string path;  // JSON Pointer of this value, for run-time error messages
  json::value literal;
  std::optional<Expr> expr;
  std::vector<Part> parts;
  std::vector<std::string> keys;  // kObject: keys[i] names items[i]
  std::vector<TemplateNode> items;
};

struct Template::Compiled {
  TemplateNode root;
};

namespace {

// Builds the mirror of v; returns false when v holds no placeholder (then node is a literal).
bool build(const json::value& v, const std::string& path, Problems& problems, TemplateNode& node) {
  node.path = path;
  node.literal = v;
  bool dynamic = false;
  if (const json::object* o = v.if_object()) {
    node.kind = TemplateNode::Kind::kObject;
    for (const auto& kv : *o) {
      node.keys.emplace_back(kv.key());
      dynamic |=
          build(kv.value(), internal::child(path, kv.key()), problems, node.items.emplace_back());
    }
  } else if (const json::array* a = v.if_array()) {
    node.kind = TemplateNode::Kind::kArray;
    for (std::size_t i = 0; i < a->size(); ++i) {
      dynamic |= build((*a)[i], internal::child(path, i), problems, node.items.emplace_back());
    }
  } else if (const json::string* s = v.if_string(); s != nullptr && internal::is_dynamic(v)) {
    dynamic = true;
    Result<std::vector<Piece>> pieces = split(*s);
    if (!pieces) {
      internal::add_problem(problems, path, pieces.error().message);
      return true;
    }
    node.kind = pieces->size() == 1 && pieces->front().is_expr ? TemplateNode::Kind::kStandalone
                                                               : TemplateNode::Kind::kInterpolated;
    for (const Piece& piece : *pieces) {
      TemplateNode::Part& part = node.parts.emplace_back();
      if (!piece.is_expr) {
        part.literal = piece.text;
        continue;
      }
      Result<Expr> expr = compile_expr(piece.text);
      if (!expr) {
        internal::add_problem(problems, path, expr.error().message);
        continue;
      }
      part.expr = *expr;
    }
    if (node.kind == TemplateNode::Kind::kStandalone) {
      node.expr = node.parts.front().expr;
    }
  }
  if (!dynamic) {
    node.kind = TemplateNode::Kind::kLiteral;
    node.keys.clear();
    node.items.clear();
  }
  return dynamic;
}

Result<json::value> render_node(const TemplateNode& node, const json::value& context) {
  switch (node.kind) {
    case TemplateNode::Kind::kLiteral:
      return node.literal;
    case TemplateNode::Kind::kStandalone: {
      VENTURE_CHECK(node.expr.has_value());
      Result<json::value> value = node.expr->eval(context);
      if (!value) {
        return Error(value.error().code, node.path + ": " + value.error().message);
      }
      return value;
    }
    case TemplateNode::Kind::kInterpolated: {
      std::string out;
      for (const TemplateNode::Part& part : node.parts) {
        if (!part.expr) {
          out += part.literal;
          continue;
        }
        Result<json::value> value = part.expr->eval(context);
        if (!value) {
          return Error(value.error().code, node.path + ": " + value.error().message);
        }
        if (const json::string* s = value->if_string()) {
          out.append(s->data(), s->size());
        } else {
          out += base::compact_json(*value);
        }
      }
      return json::value(json::string(out));
    }
    case TemplateNode::Kind::kObject: {
      json::object out;
      for (std::size_t i = 0; i < node.items.size(); ++i) {
        VENTURE_ASSIGN_OR_RETURN(json::value value, render_node(node.items[i], context));
        out[node.keys[i]] = std::move(value);
      }
      return json::value(std::move(out));
    }
    case TemplateNode::Kind::kArray: {
      json::array out;
      for (const TemplateNode& item : node.items) {
        VENTURE_ASSIGN_OR_RETURN(json::value value, render_node(item, context));
        out.push_back(std::move(value));
      }
      return json::value(std::move(out));
    }
  }
  return internal_error("unreachable template kind");
}

}  // namespace

Template Template::compile(const json::value& value, const std::string& path, Problems& problems) {
  Template t;
  t.raw_ = value;
  auto compiled = std::make_shared<Compiled>();
  // Local list: whether this template failed must not depend on the caller's problem cap.
  Problems local;
  if (build(value, path, local, compiled->root) && local.empty()) {
    t.compiled_ = std::move(compiled);
  }
  for (Problem& p : local) {
    internal::add_problem(problems, std::move(p.path), std::move(p.message));
  }
  return t;
}

Template Template::literal(json::value value) {
  Template t;
  t.raw_ = std::move(value);
  return t;
}

Result<json::value> Template::render(const json::value& context) const {
  if (compiled_ == nullptr) {
    return raw_;
  }
  return render_node(compiled_->root, context);
}

}  // namespace venture::workflow
