# safetensors_test.cpp has names of its own (File, Writer, expect_malformed) that clash with gguf_test.cpp's
# in the folder's unity file; it is compiled on its own.
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/io/safetensors_test.cpp PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
