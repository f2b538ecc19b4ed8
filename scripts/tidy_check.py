#!/usr/bin/env python3
"""House rules that clang-tidy does not check (STYLE.md "Format, lint, build").

Usage:
  python3 scripts/tidy_check.py <repo root>   check the tree; exit 1 listing every violation
  python3 scripts/tidy_check.py --self-test   run the checker on synthetic trees

Rules, over src/**/*.{h,cc} and tests/**/*.{h,cc}:
  include      a file in src/<m>/ may include "<m>/anything"; from another module only
               "<other>/<other>.h" (tests/ and src/main.cc: only public headers).
  banned       outside src/: no system_clock::now, steady_clock::now, high_resolution_clock::now,
               std::rand, rand(, srand(, std::random_device (time and randomness are injected),
               and no raw std::thread; std::jthread only in THREAD_ALLOW files. *_test.cc files
               and tests/sim/ may use std::thread and std::jthread for concurrency tests.
  using        no `using namespace` anywhere.
  readme       every src/<module>/ directory has a README.md.
  line-length  no line over 100 columns in src/ and tests/ (.h, .cc and CMake .txt files).
Comments and string literals are blanked before the banned and using checks, so prose that names
a banned call does not trip them. Python 3 standard library only.
"""

import os
import re
import sys
import tempfile

COLUMNS_MAX = 100

# Files that own long-lived threads, with the reason. Missing files are fine (not written yet).
THREAD_ALLOW = {
    "src/storage/sqlite_store.cc": "single writer thread for group commit",
    "src/nodes/worker_pool.cc": "worker threads",
    "src/engine/engine.cc": "engine loop thread",
    "src/engine/engine.h": "the engine loop thread member",
    "src/nodes/nodes.h": "the worker thread members",
    "src/workflow/expr.cc": "the jq watchdog thread (one per process)",
    "src/api/server.cc": "the io_context threads of the HTTP server",
    "src/egress/client.cc": "the one thread that drives the libcurl multi handle",
}

BANNED = [
    (re.compile(r"\bsystem_clock::now\b"), "system_clock::now: inject base::Clock&"),
    (re.compile(r"\bsteady_clock::now\b"), "steady_clock::now: inject base::Clock&"),
    (re.compile(r"\bhigh_resolution_clock::now\b"),
     "high_resolution_clock::now: inject base::Clock&"),
    (re.compile(r"\bstd::s?rand\b"), "std::rand/srand: inject base::Random&"),
    (re.compile(r"(?<![\w:.>])s?rand\s*\("), "rand()/srand(): inject base::Random&"),
    (re.compile(r"\bstd::random_device\b"), "std::random_device: inject base::Random&"),
]
RAW_THREAD = re.compile(r"\bstd::thread\b(?!::hardware_concurrency)")
JTHREAD = re.compile(r"\bstd::jthread\b")
USING_NAMESPACE = re.compile(r"\busing\s+namespace\b")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
SOURCE_EXTS = (".h", ".cc")


def strip_code(text):
    """Blanks comments and string/char literals, keeping every newline (so line numbers hold)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(blank(text[i:j]))
            i = j
        elif c == '"' and i > 0 and text[i - 1] == "R":
            m = re.match(r'"([^()\\ ]{0,16})\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append('"' + blank(text[i + 1:j]))
            i = j
        elif c == '"' or (c == "'" and (i == 0 or not (text[i - 1].isalnum() or
                                                      text[i - 1] == "_"))):
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + blank(text[i + 1:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(rel):
    parts = rel.split("/")
    if parts[0] == "src" and len(parts) >= 3:
        return parts[1]
    return None


def check_includes(rel, text, modules, report):
    own = module_of(rel)
    for number, line in enumerate(text.splitlines(), 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        target = m.group(1)
        head = target.split("/", 1)[0]
        if "/" not in target or head not in modules or head == own:
            continue
        if target != f"{head}/{head}.h":
            report(rel, number, "include",
                   f'"{target}": other modules include only "{head}/{head}.h"')


def check_banned(rel, code, report):
    if rel.startswith("src/base/"):
        return
    may_thread = rel.endswith("_test.cc") or rel.startswith("tests/sim/")
    for number, line in enumerate(code.splitlines(), 1):
        for pattern, why in BANNED:
            if pattern.search(line):
                report(rel, number, "banned", why)
        if may_thread:
            continue
        if RAW_THREAD.search(line):
            report(rel, number, "banned",
                   "raw std::thread: run work on the io_context or an allow-listed owner thread")
        if JTHREAD.search(line) and rel not in THREAD_ALLOW:
            report(rel, number, "banned",
                   "std::jthread outside the allow-list in scripts/tidy_check.py")


def check_using(rel, code, report):
    for number, line in enumerate(code.splitlines(), 1):
        if USING_NAMESPACE.search(line):
            report(rel, number, "using", "`using namespace` is not allowed")


def check_lines(rel, text, report):
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > COLUMNS_MAX:
            report(rel, number, "line-length", f"line is {len(line)} columns (max {COLUMNS_MAX})")


def walk(root, top):
    base = os.path.join(root, top)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, root).replace(os.sep, "/"), full


def check_tree(root):
    """Returns (violations as (path, line, rule, message), number of source files checked)."""
    violations = []

    def report(rel, line, rule, message):
        violations.append((rel, line, rule, message))

    src = os.path.join(root, "src")
    modules = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))) \
        if os.path.isdir(src) else []
    for m in modules:
        if not os.path.isfile(os.path.join(src, m, "README.md")):
            report(f"src/{m}/README.md", 1, "readme", f"module '{m}' has no README.md")
    checked = 0
    for top in ("src", "tests"):
        for rel, full in walk(root, top):
            is_source = rel.endswith(SOURCE_EXTS)
            if not (is_source or rel.endswith(".txt")):
                continue
            with open(full, encoding="utf-8", errors="replace") as f:
                text = f.read()
            check_lines(rel, text, report)
            if not is_source:
                continue
            checked += 1
            code = strip_code(text)
            check_includes(rel, text, set(modules), report)
            check_banned(rel, code, report)
            check_using(rel, code, report)
    return violations, checked


def main_check(root):
    violations, checked = check_tree(root)
    for rel, line, rule, message in violations:
        print(f"{rel}:{line}: {message} [{rule}]")
    if violations:
        print(f"tidy: {len(violations)} violation(s) in {checked} files", file=sys.stderr)
        return 1
    print(f"tidy: {checked} files ok")
    return 0


# ---- self-test ----

CLEAN = {
    "src/a/README.md": "# a\n",
    "src/a/a.h": "#pragma once\nnamespace venture::a { int F(); }\n",
    "src/a/internal.h": "#pragma once\n",
    "src/a/a.cc": ('#include "a/a.h"\n#include "a/internal.h"\n#include "b/b.h"\n'
                   "// Never call std::rand() or system_clock::now here; no std::thread.\n"
                   '/* using namespace std; */ const char* s = "using namespace x; rand()";\n'
                   "const char* r = R\"x(std::thread t; steady_clock::now())x\";\n"
                   "long n = 1'000'000; char q = '\\''; int Brand(int); int y = Brand(1);\n"
                   "namespace asio = boost::asio;\n"
                   "unsigned c = std::thread::hardware_concurrency(); x.rand();\n"),
    "src/a/a_test.cc": '#include "a/a.h"\n#include <thread>\nstd::thread t; std::jthread u;\n',
    "src/b/README.md": "# b\n",
    "src/b/b.h": "#pragma once\n",
    "src/b/CMakeLists.txt": "venture_library(b SRCS b.cc DEPS base)\n",
    "src/base/README.md": "# base\n",
    "src/base/time.cc": "auto t = std::chrono::system_clock::now(); std::random_device rd;\n",
    "src/engine/README.md": "# engine\n",
    "src/engine/engine.cc": "std::jthread loop_;\n",
    "tests/sim/sim.cc": '#include "a/a.h"\nstd::thread t;\n',
}

# (file, content, rule expected to fire)
DIRTY = [
    ("src/a/x.cc", '#include "b/internal.h"\n', "include"),
    ("tests/t.cc", '#include "a/internal.h"\n', "include"),
    ("src/a/x.cc", "auto t = std::chrono::system_clock::now();\n", "banned"),
    ("src/a/x.cc", "auto t = steady_clock::now();\n", "banned"),
    ("src/a/x.cc", "auto t = std::chrono::high_resolution_clock::now();\n", "banned"),
    ("src/a/x.cc", "int r = std::rand();\n", "banned"),
    ("src/a/x.cc", "int r = rand();\n", "banned"),
    ("src/a/x.cc", "srand(1);\n", "banned"),
    ("src/a/x.cc", "std::random_device rd;\n", "banned"),
    ("src/a/x.cc", "std::thread t([] {});\n", "banned"),
    ("src/a/x.cc", "std::jthread t([] {});\n", "banned"),
    ("tests/integration/x.cc", "std::thread t;\n", "banned"),
    ("src/a/x.h", "using namespace std;\n", "using"),
    ("tests/t_test.cc", "using namespace testing;\n", "using"),
    ("src/c/c.h", "#pragma once\n", "readme"),
    ("src/a/x.cc", "int x;" + " " * 100 + "\n", "line-length"),
    ("src/a/CMakeLists.txt", "#" * 101 + "\n", "line-length"),
]


def write_tree(root, files):
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)


def self_test():
    with tempfile.TemporaryDirectory() as root:
        write_tree(root, CLEAN)
        violations, checked = check_tree(root)
        assert not violations, f"clean tree reported {violations}"
        assert checked == 8, checked
    for rel, content, rule in DIRTY:
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, CLEAN)
            write_tree(root, {rel: content})
            violations, _ = check_tree(root)
            rules = {v[2] for v in violations}
            assert rules == {rule}, f"{rel}: {content!r}: expected {rule}, got {violations}"
            assert all(v[0] in (rel, "src/c/README.md") for v in violations), violations
    print(f"tidy self-test: {len(DIRTY)} rules fire, clean tree passes")
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) != 2:
        print("\n".join(__doc__.strip().splitlines()[2:5]), file=sys.stderr)
        return 2
    return main_check(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
