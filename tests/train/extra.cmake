target_link_libraries(${target} PRIVATE qsafe_builtin_schemes)
