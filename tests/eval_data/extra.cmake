# The model-judge test loads SmolLM2 with fp32 layers, which needs the named schemes registered.
target_link_libraries(${target} PRIVATE qsafe_builtin_schemes)
