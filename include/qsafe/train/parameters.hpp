#pragma once
// A trainable parameter as the optimizer and checkpoints see it: a named flat float array and its gradient.
#include <cstddef>
#include <string>
#include <vector>

#include "qsafe/train/lora.hpp"

namespace qsafe::train {

struct ParameterRef {
    std::string name;
    float* value = nullptr;
    float* grad = nullptr;
    std::size_t size = 0;
};

/// Every LoRA matrix of the adapter (`<tensor>.lora_a`, `<tensor>.lora_b`), in the adapter's order. The
/// pointers stay valid while the adapter's matrices are not resized.
inline std::vector<ParameterRef> lora_parameters(LoraAdapter& adapter) {
    std::vector<ParameterRef> out;
    for (LoraPair& p : adapter.pairs()) {
        out.push_back({p.tensor + ".lora_a", p.a.data(), p.grad_a.data(), static_cast<std::size_t>(p.a.size())});
        out.push_back({p.tensor + ".lora_b", p.b.data(), p.grad_b.data(), static_cast<std::size_t>(p.b.size())});
    }
    return out;
}

}  // namespace qsafe::train
