# `qsafe gate` end to end on hand-made reports (gate_cli_test.sh): exit codes 0 / 4 / 1, the FAIL line, the
# JUnit file. Included from tools/CMakeLists.txt, where the qsafe_cli target exists.
add_test(NAME "cli: gate passes, fails on a material and significant drop, and rejects bad reports"
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/gate_cli_test.sh $<TARGET_FILE:qsafe_cli> ${CMAKE_CURRENT_BINARY_DIR}/cli-test-gate)
