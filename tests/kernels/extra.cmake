# The AVX-512 executable is compile coverage on AVX2-only hosts; the sanitizer build skips it (its test cases
# cannot run here, and the Release build already compiles it).
if(QSAFE_SANITIZE)
    return()
endif()
# AVX-512 build of the kernels. The kernels are instantiated for xsimd::avx512bw in one translation unit
# compiled with -mavx512f -mavx512bw -mavx512vl (+ cd, dq: xsimd 8.1 chains avx512bw on them), which lives in its own executable: inline functions (std,
# Eigen, doctest) compiled there must not be picked by the linker for code that runs on AVX2-only CPUs.
# Its test cases run only when the CPU has AVX-512BW and report that they were skipped otherwise.
set(QSAFE_AVX512_DIR ${CMAKE_CURRENT_SOURCE_DIR}/kernels/avx512)
add_executable(${target}_avx512 ${QSAFE_AVX512_DIR}/avx512_test.cpp ${QSAFE_AVX512_DIR}/avx512_kernels.cpp)
set_source_files_properties(${QSAFE_AVX512_DIR}/avx512_kernels.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512cd;-mavx512dq")
target_link_libraries(${target}_avx512 PRIVATE qsafe_test_main qsafe::qsafe doctest::doctest qsafe_project_options)
target_include_directories(${target}_avx512 PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
doctest_discover_tests(${target}_avx512 TEST_PREFIX "${area}-avx512: " PROPERTIES TIMEOUT 900)
