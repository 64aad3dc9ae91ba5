# report_test.cpp builds its own hand-made records and verdict shorthands (R, P, C, U) that clash with
# metrics_test.cpp's in the folder's unity file; it is compiled on its own.
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/eval_report/report_test.cpp PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
