#include <fstream>
#include <sstream>

#include "base/base.h"
#include "cli/cli.h"
#include "workflow/workflow.h"

namespace venture::cli {
namespace {

bool read_file(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot open the file";
    return false;
  }
  // Read at most one byte over the limit so a huge file is refused without reading all of it.
  std::string buf(limits::kDefinitionBytesMax + 1, '\0');
  in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  buf.resize(static_cast<std::size_t>(in.gcount()));
  out = std::move(buf);
  return true;
}

}  // namespace

int validate_files(const std::vector<std::string>& files, bool json_output, std::ostream& out) {
  int rc = kExitOk;
  json::array report;
  for (const std::string& file : files) {
    workflow::Problems problems;
    std::string text, error;
    if (!read_file(file, text, error)) {
      problems.push_back({"", error});
    } else {
      auto doc = workflow::parse_document(text, problems);
      if (doc && problems.empty()) (void)workflow::compile(*doc, problems);
    }
    if (!problems.empty()) rc = kExitError;
    json::array items;
    for (const auto& p : problems) {
      if (json_output) {
        items.push_back(json::object{{"path", p.path}, {"message", p.message}});
      } else if (p.path.empty()) {
        out << file << ": " << p.message << "\n";
      } else {
        out << file << ": " << p.path << ": " << p.message << "\n";
      }
    }
    if (json_output) {
      report.push_back(
          json::object{{"file", file}, {"valid", problems.empty()}, {"errors", std::move(items)}});
    } else if (problems.empty()) {
      out << file << ": ok\n";
    }
  }
  if (json_output) out << json::serialize(report) << "\n";
  return rc;
}

std::string version_string() { return "venture " + std::string(kVersion); }

}  // namespace venture::cli
