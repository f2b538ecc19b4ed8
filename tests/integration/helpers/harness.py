"""A tiny test runner: `@test` registers a function; `check` records a failure and goes on;
`require` stops the test. `main()` runs every test (or those named on the command line after the
binary and the source dir, or in VENTURE_TEST_FILTER, comma-separated substrings), prints one
ok/FAIL line per test and exits 1 if any failed."""
import os
import sys
import time
import traceback

_tests = []
_current = None


class Stop(Exception):
    """A `require` that did not hold: the test stops here."""


def test(fn):
    _tests.append(fn)
    return fn


def check(cond, what):
    """Records a failure of the running test (and prints it at once) when `cond` is false."""
    if not cond:
        _current["failures"].append(str(what))
        print(f"  FAIL: {_current['name']}: {what}", flush=True)
    return bool(cond)


def require(cond, what):
    if not check(cond, what):
        raise Stop(str(what))


def note(text):
    print(f"  .. {text}", flush=True)


def run_all(setup=None, teardown=None):
    global _current
    wanted = [a for a in sys.argv[3:] if a]
    env_filter = os.environ.get("VENTURE_TEST_FILTER", "")
    if env_filter:
        wanted += [w for w in env_filter.split(",") if w]
    tests = [t for t in _tests if not wanted or any(w in t.__name__ for w in wanted)]
    results = []
    context = None
    failed_setup = None
    if setup is not None:
        try:
            context = setup()
        except Exception:  # noqa: BLE001 - a broken setup fails every test, visibly
            failed_setup = traceback.format_exc()
    for t in tests:
        _current = {"name": t.__name__, "failures": []}
        start = time.monotonic()
        if failed_setup:
            _current["failures"].append("setup failed:\n" + failed_setup)
        else:
            try:
                t(context) if setup is not None else t()
            except Stop:
                pass
            except Exception:  # noqa: BLE001 - report and go on with the next test
                _current["failures"].append("exception:\n" + traceback.format_exc())
                print(f"  FAIL: {t.__name__}: exception:\n{traceback.format_exc()}", flush=True)
        elapsed = time.monotonic() - start
        ok = not _current["failures"]
        results.append((t.__name__, ok, _current["failures"]))
        print(f"{'ok  ' if ok else 'FAIL'} {t.__name__} ({elapsed:.1f}s)", flush=True)
    if teardown is not None:
        try:
            teardown(context)
        except Exception:  # noqa: BLE001
            print("teardown failed:\n" + traceback.format_exc(), flush=True)
            results.append(("teardown", False, ["teardown failed"]))
    passed = sum(1 for _, ok, _ in results if ok)
    failed = [(n, f) for n, ok, f in results if not ok]
    print(f"\n{passed} passed, {len(failed)} failed")
    for name, fails in failed:
        for f in fails:
            first = f.strip().splitlines()[-1] if f.startswith("exception") else f
            print(f"  {name}: {first[:2000]}")
    sys.exit(1 if failed else 0)
