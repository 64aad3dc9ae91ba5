# qsafe's own programs (tools, tests, benchmarks) run the best kernels of the CPU they run on, whatever they
# were compiled with: tools/common/isa_kernels.cpp is compiled once per instruction-set level with that
# level's flags (an "instruction-set unit", kernels/isa_dispatch.hpp), and programs register all units at
# start-up and pick one by CPUID (core/cpu_features.hpp; QSAFE_ISA forces a lower level).
#
# Each unit is partially linked (ld -r) with its COMDAT groups dissolved, then every symbol but its entry
# point qsafe_isa_kernels_<level> is made local: the inline functions a unit compiled with AVX-512 flags
# (std::, Eigen, qsafe helpers) can then never be merged with — and called in place of — the baseline's
# copies on a CPU without AVX-512. The units are compiled with -fno-gnu-unique: GCC otherwise marks static
# locals of inline functions and inline variables STB_GNU_UNIQUE, a binding objcopy cannot make local, and
# with their groups dissolved they would be duplicate definitions.
set(QSAFE_ISA_LEVELS portable avx2 avx512bw avx512vnni)
set(QSAFE_ISA_FLAGS_portable -march=x86-64 -mtune=generic)
set(QSAFE_ISA_FLAGS_avx2 -march=x86-64-v3 -mtune=generic)
set(QSAFE_ISA_FLAGS_avx512bw -march=x86-64-v4 -mtune=generic)
set(QSAFE_ISA_FLAGS_avx512vnni -march=x86-64-v4 -mavx512vnni -mtune=generic)

if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    message(FATAL_ERROR "qsafe's dispatched programs are built for x86-64 only (set QSAFE_BUILD_* OFF elsewhere)")
endif()
if(NOT CMAKE_OBJCOPY)
    find_program(CMAKE_OBJCOPY objcopy REQUIRED)
endif()
if(NOT CMAKE_LINKER)
    find_program(CMAKE_LINKER ld REQUIRED)
endif()

set(QSAFE_ISA_OBJECTS "")
foreach(level IN LISTS QSAFE_ISA_LEVELS)
    string(TOUPPER ${level} upper)
    add_library(qsafe_isa_${level} OBJECT ${PROJECT_SOURCE_DIR}/tools/common/isa_kernels.cpp)
    # qsafe_warnings, not qsafe_project_options: no -march=native here, the level's flags decide.
    target_link_libraries(qsafe_isa_${level} PRIVATE qsafe::qsafe qsafe_warnings)
    target_compile_definitions(qsafe_isa_${level} PRIVATE QSAFE_ISA_UNIT_${upper})
    target_compile_options(qsafe_isa_${level} PRIVATE ${QSAFE_ISA_FLAGS_${level}} -fno-gnu-unique)
    set(partial ${PROJECT_BINARY_DIR}/isa/qsafe_isa_${level}_partial.o)
    set(unit ${PROJECT_BINARY_DIR}/isa/qsafe_isa_${level}.o)
    add_custom_command(
        OUTPUT ${unit}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/isa
        COMMAND ${CMAKE_LINKER} -r --force-group-allocation $<TARGET_OBJECTS:qsafe_isa_${level}> -o ${partial}
        COMMAND ${CMAKE_OBJCOPY} --keep-global-symbol=qsafe_isa_kernels_${level} ${partial} ${unit}
        DEPENDS qsafe_isa_${level} $<TARGET_OBJECTS:qsafe_isa_${level}>
        COMMENT "qsafe: instruction-set unit ${level} (entry point only)"
        COMMAND_EXPAND_LISTS VERBATIM)
    list(APPEND QSAFE_ISA_OBJECTS ${unit})
endforeach()
set_source_files_properties(${QSAFE_ISA_OBJECTS} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
add_custom_target(qsafe_isa_units DEPENDS ${QSAFE_ISA_OBJECTS})

# Links the units into a program; tools/common/isa_kernels.hpp registers them.
function(qsafe_link_isa_units target)
    target_sources(${target} PRIVATE ${QSAFE_ISA_OBJECTS})
    add_dependencies(${target} qsafe_isa_units)
endfunction()
