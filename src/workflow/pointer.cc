// RFC 6901 JSON Pointer and RFC 6902 JSON Patch.
#include "workflow/internal.h"

namespace venture::workflow {
namespace {

// Copies can double a document per op; what all copies of one patch add is bounded by this
// (approximate bytes: string lengths plus a constant per value).
constexpr std::size_t kPatchCopyBytesMax = limits::kEventBytesMax;

std::string shown(std::string_view pointer) { return internal::quote(pointer); }

Result<std::vector<std::string>> parse_pointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) {
    return tokens;
  }
  if (pointer.front() != '/') {
    return invalid_argument_error("pointer " + shown(pointer) + " must be empty or start with '/'");
  }
  std::string token;
  for (std::size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (pointer[i] != '~') {
      token += pointer[i];
      continue;
    }
    if (i + 1 < pointer.size() && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
      token += pointer[i + 1] == '0' ? '~' : '/';
      ++i;
      continue;
    }
    return invalid_argument_error("pointer " + shown(pointer) + ": '~' must be followed by 0 or 1");
  }
  return tokens;
}

// An array index token: "0" or digits without a leading zero; "-" (one past the end) only where
// allow_end. The index must be < size, or <= size where allow_end.
Result<std::size_t> array_index(const std::string& token, std::size_t size, bool allow_end) {
  if (token == "-") {
    if (allow_end) {
      return size;
    }
    return not_found_error("'-' names the element after the last one, which cannot be read");
  }
  const bool digits = !token.empty() && token.size() <= 18 &&
                      token.find_first_not_of("0123456789") == std::string::npos &&
                      (token == "0" || token.front() != '0');
  if (!digits) {
    return invalid_argument_error("'" + token.substr(0, 32) + "' is not an array index");
  }
  const std::size_t index = std::stoull(token);
  if (index > size || (index == size && !allow_end)) {
    return not_found_error("index " + token + " is out of range (size " + std::to_string(size) +
                           ")");
  }
  return index;
}

// The value at tokens[0..count) or an error naming the pointer.
Result<json::value*> walk(json::value& doc, const std::vector<std::string>& tokens,
                          std::size_t count, std::string_view pointer) {
  json::value* at = &doc;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string& token = tokens[i];
    if (json::object* o = at->if_object()) {
      at = o->if_contains(token);
      if (at == nullptr) {
        return not_found_error("path " + shown(pointer) + " does not exist");
      }
    } else if (json::array* a = at->if_array()) {
      Result<std::size_t> index = array_index(token, a->size(), false);
      if (!index) {
        return Error(index.error().code, "path " + shown(pointer) + ": " + index.error().message);
      }
      at = &(*a)[*index];
    } else {
      return not_found_error("path " + shown(pointer) + " does not exist");
    }
  }
  return at;
}

bool numbers_equal(const json::value& a, const json::value& b) {
  if (a.is_double() || b.is_double()) {
    return internal::as_number(a) == internal::as_number(b);
  }
  if (a.is_int64() && b.is_int64()) {
    return a.get_int64() == b.get_int64();
  }
  if (a.is_uint64() && b.is_uint64()) {
    return a.get_uint64() == b.get_uint64();
  }
  const json::value& s = a.is_int64() ? a : b;  // one int64, one uint64
  const json::value& u = a.is_int64() ? b : a;
  return s.get_int64() >= 0 && static_cast<uint64_t>(s.get_int64()) == u.get_uint64();
}

}  // namespace

namespace internal {

// RFC 6902 §4.6 equality: numbers by value, objects regardless of member order.
bool json_equal(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number()) {
    return numbers_equal(a, b);
  }
  if (a.kind() != b.kind()) {
    return false;
  }
  if (const json::object* oa = a.if_object()) {
    const json::object& ob = b.get_object();
    if (oa->size() != ob.size()) {
      return false;
    }
    for (const auto& kv : *oa) {
      const json::value* other = ob.if_contains(kv.key());
      if (other == nullptr || !json_equal(kv.value(), *other)) {
        return false;
      }
    }
    return true;
  }
  if (const json::array* aa = a.if_array()) {
    const json::array& ab = b.get_array();
    if (aa->size() != ab.size()) {
      return false;
    }
    for (std::size_t i = 0; i < aa->size(); ++i) {
      if (!json_equal((*aa)[i], ab[i])) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

}  // namespace internal

namespace {

using internal::json_equal;

std::size_t approx_bytes(const json::value& v, std::size_t cap) {
  std::size_t total = 8;
  if (const json::string* s = v.if_string()) {
    total += s->size();
  } else if (const json::object* o = v.if_object()) {
    for (const auto& kv : *o) {
      total += kv.key().size() + approx_bytes(kv.value(), cap);
      if (total > cap) {
        return total;
      }
    }
  } else if (const json::array* a = v.if_array()) {
    for (const json::value& e : *a) {
      total += approx_bytes(e, cap);
      if (total > cap) {
        return total;
      }
    }
  }
  return total;
}

}  // namespace

Result<const json::value*> resolve_pointer(const json::value& doc, std::string_view pointer) {
  VENTURE_ASSIGN_OR_RETURN(std::vector<std::string> tokens, parse_pointer(pointer));
  // Walk does not modify; the const_cast only lets one walker serve both patch and resolve.
  VENTURE_ASSIGN_OR_RETURN(json::value * at,
                           walk(const_cast<json::value&>(doc), tokens, tokens.size(), pointer));
  return static_cast<const json::value*>(at);
}

namespace {

struct Op {
  std::string name;
  std::string path;
  std::string from;
  const json::value* value = nullptr;
};

Status add(json::value& doc, const std::string& pointer, json::value value) {
  VENTURE_ASSIGN_OR_RETURN(std::vector<std::string> tokens, parse_pointer(pointer));
  if (tokens.empty()) {
    doc = std::move(value);
    return ok();
  }
  VENTURE_ASSIGN_OR_RETURN(json::value * parent, walk(doc, tokens, tokens.size() - 1, pointer));
  const std::string& last = tokens.back();
  if (json::object* o = parent->if_object()) {
    (*o)[last] = std::move(value);
    return ok();
  }
  if (json::array* a = parent->if_array()) {
    Result<std::size_t> index = array_index(last, a->size(), true);
    if (!index) {
      return invalid_argument_error("path " + shown(pointer) + ": " + index.error().message);
    }
    a->insert(a->begin() + static_cast<std::ptrdiff_t>(*index), std::move(value));
    return ok();
  }
  return invalid_argument_error("path " + shown(pointer) +
                                ": the parent is not an object or array");
}

Result<json::value> remove(json::value& doc, const std::string& pointer) {
  VENTURE_ASSIGN_OR_RETURN(std::vector<std::string> tokens, parse_pointer(pointer));
  if (tokens.empty()) {
    return invalid_argument_error("the whole document cannot be removed");
  }
  VENTURE_ASSIGN_OR_RETURN(json::value * parent, walk(doc, tokens, tokens.size() - 1, pointer));
  const std::string& last = tokens.back();
  if (json::object* o = parent->if_object()) {
    auto it = o->find(last);
    if (it == o->end()) {
      return invalid_argument_error("path " + shown(pointer) + " does not exist");
    }
    json::value removed = std::move(it->value());
    o->erase(it);
    return removed;
  }
  if (json::array* a = parent->if_array()) {
    Result<std::size_t> index = array_index(last, a->size(), false);
    if (!index) {
      return invalid_argument_error("path " + shown(pointer) + ": " + index.error().message);
    }
    json::value removed = std::move((*a)[*index]);
    a->erase(a->begin() + static_cast<std::ptrdiff_t>(*index));
    return removed;
  }
  return invalid_argument_error("path " + shown(pointer) + " does not exist");
}

Result<json::value*> existing(json::value& doc, const std::string& pointer) {
  VENTURE_ASSIGN_OR_RETURN(std::vector<std::string> tokens, parse_pointer(pointer));
  Result<json::value*> at = walk(doc, tokens, tokens.size(), pointer);
  if (!at) {
    return invalid_argument_error(at.error().message);  // every patch failure but `test` is invalid
  }
  return at;
}

Result<Op> read_op(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) {
    return invalid_argument_error("an operation must be an object");
  }
  Op op;
  const json::string* name = base::find_string(*o, "op");
  const json::string* path = base::find_string(*o, "path");
  if (name == nullptr) {
    return invalid_argument_error("'op' is missing or not a string");
  }
  if (path == nullptr) {
    return invalid_argument_error("'path' is missing or not a string");
  }
  op.name = std::string(*name);
  op.path = std::string(*path);
  const bool needs_value = op.name == "add" || op.name == "replace" || op.name == "test";
  const bool needs_from = op.name == "move" || op.name == "copy";
  if (!needs_value && !needs_from && op.name != "remove") {
    std::string message = "unknown op " + internal::quote(op.name);
    const std::string suggestion =
        closest_match(op.name, {"add", "remove", "replace", "move", "copy", "test"});
    return invalid_argument_error(
        suggestion.empty() ? message : message + "; did you mean '" + suggestion + "'?");
  }
  op.value = o->if_contains("value");
  if (needs_value && op.value == nullptr) {
    return invalid_argument_error("'" + op.name + "' needs a 'value'");
  }
  if (needs_from) {
    const json::string* from = base::find_string(*o, "from");
    if (from == nullptr) {
      return invalid_argument_error("'" + op.name + "' needs a 'from' string");
    }
    op.from = std::string(*from);
  }
  return op;
}

Status apply_one(json::value& doc, const Op& op, std::size_t& copied) {
  if (op.name == "add") {
    return add(doc, op.path, *op.value);
  }
  if (op.name == "remove") {
    Result<json::value> removed = remove(doc, op.path);
    return removed ? ok() : Status(removed.error());
  }
  if (op.name == "replace") {
    VENTURE_ASSIGN_OR_RETURN(json::value * at, existing(doc, op.path));
    *at = *op.value;
    return ok();
  }
  if (op.name == "test") {
    VENTURE_ASSIGN_OR_RETURN(json::value * at, existing(doc, op.path));
    if (!json_equal(*at, *op.value)) {
      return failed_precondition_error("test failed: the value at " + shown(op.path) +
                                       " is not the expected one");
    }
    return ok();
  }
  if (op.name == "move") {
    if (op.path == op.from) {
      VENTURE_RETURN_IF_ERROR(existing(doc, op.from));
      return ok();
    }
    if (op.path.starts_with(op.from + "/")) {
      return invalid_argument_error("cannot move " + shown(op.from) + " into its own child " +
                                    shown(op.path));
    }
    VENTURE_ASSIGN_OR_RETURN(json::value moved, remove(doc, op.from));
    return add(doc, op.path, std::move(moved));
  }
  VENTURE_ASSIGN_OR_RETURN(json::value * source, existing(doc, op.from));  // copy
  copied += approx_bytes(*source, kPatchCopyBytesMax);
  if (copied > kPatchCopyBytesMax) {
    return resource_exhausted_error("copies add more than " + std::to_string(kPatchCopyBytesMax) +
                                    " bytes");
  }
  json::value value = *source;
  return add(doc, op.path, std::move(value));
}

}  // namespace

Result<json::value> apply_patch(const json::value& doc, const json::value& ops) {
  const json::array* list = ops.if_array();
  if (list == nullptr) {
    return invalid_argument_error("a patch must be an array of operations");
  }
  if (list->size() > limits::kPatchOpsMax) {
    return invalid_argument_error("a patch of " + std::to_string(list->size()) +
                                  " operations exceeds the limit of " +
                                  std::to_string(limits::kPatchOpsMax));
  }
  json::value result = doc;  // atomic: the caller's doc is untouched on any failure
  std::size_t copied = 0;
  for (std::size_t i = 0; i < list->size(); ++i) {
    Result<Op> op = read_op((*list)[i]);
    Status applied = op ? apply_one(result, *op, copied) : Status(op.error());
    if (!applied) {
      const Error& e = applied.error();
      const Code code = e.code == Code::kNotFound ? Code::kInvalidArgument : e.code;
      return Error(code, "/" + std::to_string(i) + ": " + e.message);
    }
  }
  return result;
}

}  // namespace venture::workflow
