# The one CMake helper family: venture_library, venture_test, venture_fuzzer, venture_executable.
# Every module is one static library whose DEPS name the modules it may use; the dependency
# direction of ARCHITECTURE.md is therefore enforced by the linker and by the tidy test.

set(VENTURE_WARNINGS
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast)
if(VENTURE_WERROR)
  list(APPEND VENTURE_WARNINGS -Werror)
endif()

function(venture_apply_options target)
  target_compile_options(${target} PRIVATE ${VENTURE_WARNINGS})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_definitions(${target} PUBLIC BOOST_ASIO_NO_DEPRECATED BOOST_JSON_NO_LIB
    BOOST_SYSTEM_NO_LIB)
endfunction()

# venture_library(NAME SRCS a.cc b.cc DEPS base other_target ...)
function(venture_library name)
  cmake_parse_arguments(V "" "" "SRCS;DEPS" ${ARGN})
  add_library(${name} STATIC ${V_SRCS})
  venture_apply_options(${name})
  target_link_libraries(${name} PUBLIC ${V_DEPS})
endfunction()

# venture_test(NAME SRCS x_test.cc DEPS module ... [LABELS l])
function(venture_test name)
  cmake_parse_arguments(V "" "" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT VENTURE_TESTS)
    return()
  endif()
  add_executable(${name} ${V_SRCS})
  venture_apply_options(${name})
  target_link_libraries(${name} PRIVATE ${V_DEPS} GTest::gtest GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS "unit;${V_LABELS}" TIMEOUT 600)
endfunction()

# venture_service_test(NAME SRCS x_test.cc DEPS module ...): a unit test that needs the test
# PostgreSQL, NATS and Redis (tests/CMakeLists.txt's fixture `test_services` starts them once per
# ctest run); it reads VENTURE_TEST_POSTGRES_URL, NATS_URL and REDIS_URL from its environment.
function(venture_service_test name)
  cmake_parse_arguments(V "" "" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT VENTURE_TESTS)
    return()
  endif()
  add_executable(${name} ${V_SRCS})
  venture_apply_options(${name})
  target_link_libraries(${name} PRIVATE ${V_DEPS} GTest::gtest GTest::gtest_main)
  venture_add_service_test(${name} $<TARGET_FILE:${name}>)
  set_property(TEST ${name} APPEND PROPERTY LABELS "unit;${V_LABELS}")
endfunction()

# venture_add_service_test(NAME COMMAND...): any ctest command run with the test services' env.
function(venture_add_service_test name)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  add_test(NAME ${name} COMMAND ${Python3_EXECUTABLE}
    ${PROJECT_SOURCE_DIR}/scripts/with-test-services ${PROJECT_BINARY_DIR}/test-services --
    ${ARGN})
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED test_services TIMEOUT 900
    LABELS "services")
endfunction()

# venture_fuzzer(NAME SRCS x_fuzz.cc DEPS module ... CORPUS dir)
# With VENTURE_FUZZ (clang, preset `fuzz`) it links libFuzzer; otherwise it links a small driver that
# replays the corpus, so every build exercises the fuzz entry point on its seed inputs.
function(venture_fuzzer name)
  cmake_parse_arguments(V "" "CORPUS" "SRCS;DEPS" ${ARGN})
  if(VENTURE_FUZZ)
    add_executable(${name} ${V_SRCS})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    # The smoke run mutates a scratch copy so the seed corpus in the tree stays as committed.
    add_test(NAME ${name}_smoke COMMAND ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:${name}>
      -DCORPUS=${V_CORPUS} -DSCRATCH=${CMAKE_CURRENT_BINARY_DIR}/${name}_scratch
      -P ${PROJECT_SOURCE_DIR}/cmake/fuzz_smoke.cmake)
    set_tests_properties(${name}_smoke PROPERTIES LABELS "fuzz" TIMEOUT 300)
  else()
    add_executable(${name} ${V_SRCS} ${PROJECT_SOURCE_DIR}/tests/fuzz_replay_main.cc)
    add_test(NAME ${name}_corpus COMMAND ${name} ${V_CORPUS})
    set_tests_properties(${name}_corpus PROPERTIES LABELS "fuzz-corpus")
  endif()
  venture_apply_options(${name})
  target_link_libraries(${name} PRIVATE ${V_DEPS})
endfunction()

# The one executable.
macro(venture_executable_main)
  add_executable(venture ${PROJECT_SOURCE_DIR}/src/main.cc)
  venture_apply_options(venture)
  target_link_libraries(venture PRIVATE venture_bench api cli engine nodes storage bus workflow base
    CLI11::CLI11)
  if(JEMALLOC_LIBRARY)
    target_link_libraries(venture PRIVATE ${JEMALLOC_LIBRARY})
  endif()
  set_target_properties(venture PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
endmacro()
