target_link_libraries(${target} PRIVATE qsafe_builtin_schemes)  # int2-g32-asym and the vq names by name
