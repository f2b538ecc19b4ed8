// Goal: `workflow validate` prints one line per problem as FILE: /pointer: message and returns the
// SPEC exit codes; -o json is stable for scripts. Method: temporary files, output captured in a
// stream.
#include "cli/cli.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/base.h"

namespace venture::cli {
namespace {

class ValidateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "venture-cli-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(ValidateTest, ValidFilesPrintOkAndExitZero) {
  const std::string a = write("a.json", R"({"name":"a","nodes":[{"id":"x","type":"noop"}]})");
  const std::string b = write("b.yaml", "name: b\nnodes:\n  - {id: x, type: noop}\n");
  std::ostringstream out;
  EXPECT_EQ(validate_files({a, b}, false, out), kExitOk);
  EXPECT_EQ(out.str(), a + ": ok\n" + b + ": ok\n");
}

TEST_F(ValidateTest, ProblemsArePrintedWithPathsAndExitOne) {
  const std::string bad = write("bad.json", R"({"name":"a","nodes":[{"id":"x","type":"noop",
      "needs":["y"]},{"id":"z","type":"transform","config":{"expr":"| x"}}]})");
  const std::string missing = dir_ + "/missing.json";
  std::ostringstream out;
  EXPECT_EQ(validate_files({bad, missing}, false, out), kExitError);
  const std::string text = out.str();
  EXPECT_NE(text.find(bad + ": /nodes/0/needs/0: "), std::string::npos) << text;
  EXPECT_NE(text.find(bad + ": /nodes/1/config/expr: jq: "), std::string::npos) << text;
  EXPECT_NE(text.find(missing + ": cannot open the file\n"), std::string::npos) << text;
  for (char c : text) EXPECT_NE(c, '\r');
}

TEST_F(ValidateTest, JsonOutputIsOneDocument) {
  const std::string bad = write("bad.json", "{");
  std::ostringstream out;
  EXPECT_EQ(validate_files({bad}, true, out), kExitError);
  auto doc = base::parse_json(out.str()).value();
  const auto& first = doc.as_array().at(0).as_object();
  EXPECT_EQ(first.at("file").as_string(), bad);
  EXPECT_EQ(first.at("valid"), false);
  EXPECT_FALSE(first.at("errors").as_array().empty());
}

}  // namespace
}  // namespace venture::cli
