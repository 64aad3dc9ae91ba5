# One row of the malformed-input table: the command must fail cleanly.
#   cmake -D "COMMAND_LINE=qsafe|arg|arg" -D "EXPECT=regex" -P run_case.cmake   (arguments split at |)
# Clean means: it ends within the timeout (no hang), by an exit code 1..125 (not a signal: a crash shows as
# a signal name or 128 + n), with no sanitizer report (an AddressSanitizer or UBSan finding also exits 1),
# and with a message matching EXPECT — which names the file and the offset, row, tensor or key.
string(REPLACE "|" ";" command "${COMMAND_LINE}")
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
set(all "${out}${err}")
if(NOT rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "did not exit normally (${rc}): ${command}\n${all}")
endif()
if(rc EQUAL 0 OR rc GREATER 125)
    message(FATAL_ERROR "expected an exit code in 1..125, got ${rc}: ${command}\n${all}")
endif()
if(all MATCHES "AddressSanitizer|LeakSanitizer|runtime error:|std::bad_alloc|terminate called")
    message(FATAL_ERROR "a sanitizer report or an uncaught exception: ${command}\n${all}")
endif()
if(NOT all MATCHES "${EXPECT}")
    message(FATAL_ERROR "exit code ${rc}, but the message does not match '${EXPECT}':\n${all}")
endif()
message(STATUS "exit code ${rc}: ${err}")
