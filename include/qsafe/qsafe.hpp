#pragma once
// qsafe umbrella header: the public modules. The named built-in schemes are not included here because they
// instantiate every kernel: include "qsafe/registry/builtin_schemes.hpp" in one translation unit of a program
// (that registers them at start-up) or call register_scheme<S>() for the schemes you need.
#include "qsafe/version.hpp"

#include "qsafe/core/error.hpp"
#include "qsafe/core/fp32_blas.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"

#include "qsafe/policy/scheme.hpp"

#include "qsafe/formats/matrix_serialization.hpp"
#include "qsafe/formats/quantized_matrix.hpp"

#include "qsafe/quant/error_metrics.hpp"
#include "qsafe/quant/rtn.hpp"

#include "qsafe/io/gguf.hpp"
#include "qsafe/io/safetensors.hpp"

#include "qsafe/tokenizer/chat_template.hpp"
#include "qsafe/tokenizer/from_gguf.hpp"
#include "qsafe/tokenizer/from_tokenizer_json.hpp"
#include "qsafe/tokenizer/tokenizer.hpp"

#include "qsafe/kernels/matmul.hpp"

#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/registry/scheme_registry.hpp"

#include "qsafe/model/decoder.hpp"
#include "qsafe/model/generation.hpp"
#include "qsafe/model/kl_divergence.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/model/perplexity.hpp"

#include "qsafe/calib/calibration_data.hpp"
#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/calib/collect.hpp"
#include "qsafe/quant/gptq.hpp"
#include "qsafe/ptq/awq.hpp"
#include "qsafe/ptq/model_file.hpp"
#include "qsafe/ptq/quantize_model.hpp"
#include "qsafe/ptq/sequential.hpp"
#include "qsafe/ptq/variant.hpp"

#include "qsafe/safety/bit_allocation.hpp"
#include "qsafe/safety/protection.hpp"
#include "qsafe/safety/response_kl.hpp"
#include "qsafe/safety/response_set.hpp"
#include "qsafe/safety/safety_patch.hpp"
#include "qsafe/safety/sensitivity.hpp"
#include "qsafe/safety/snip_scores.hpp"
#include "qsafe/safety/weight_scores.hpp"

#include "qsafe/train/adamw.hpp"
#include "qsafe/train/alignment_data.hpp"
#include "qsafe/train/fake_quant.hpp"
#include "qsafe/train/lora.hpp"
#include "qsafe/train/objectives.hpp"
#include "qsafe/train/trainable_llama.hpp"
#include "qsafe/train/trainer.hpp"
#include "qsafe/train/training_data.hpp"
#include "qsafe/train/training_report.hpp"
#include "qsafe/train/weight_mask.hpp"

#include "qsafe/eval/combined_judge.hpp"
#include "qsafe/eval/dataset.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/file_dataset.hpp"
#include "qsafe/eval/evaluator.hpp"
#include "qsafe/eval/gate.hpp"
#include "qsafe/eval/journal.hpp"
#include "qsafe/eval/junit_xml.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/model_judge.hpp"
#include "qsafe/eval/refusal_judge.hpp"
#include "qsafe/eval/report.hpp"
#include "qsafe/eval/safety_kl.hpp"
#include "qsafe/eval/sharding.hpp"
#include "qsafe/eval/statistics.hpp"
#include "qsafe/eval/svg_plot.hpp"
#include "qsafe/eval/xml_escape.hpp"
