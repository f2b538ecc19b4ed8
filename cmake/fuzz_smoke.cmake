# A short libFuzzer run over a scratch copy of the seed corpus: -runs bounds it by count, not time.
file(REMOVE_RECURSE ${SCRATCH})
file(MAKE_DIRECTORY ${SCRATCH})
file(COPY ${CORPUS}/ DESTINATION ${SCRATCH})
execute_process(
  COMMAND ${FUZZER} -runs=20000 -max_len=65536 -timeout=10 -rss_limit_mb=2048 ${SCRATCH}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzzer ${FUZZER} failed with ${rc}")
endif()
