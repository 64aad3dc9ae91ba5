#pragma once
// GGUF (llama.cpp's model format) reading and writing: include this for the whole API.
//   gguf_value.hpp   ValueType, Value, Array, MetadataEntry
//   gguf_reader.hpp  File (mmap'd, validated reader), TensorInfo
//   gguf_writer.hpp  Writer (GGUF v3, temp file + rename)
#include "qsafe/io/gguf_reader.hpp"
#include "qsafe/io/gguf_value.hpp"
#include "qsafe/io/gguf_writer.hpp"
