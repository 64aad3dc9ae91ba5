#pragma once
// Weights chosen to stay at full precision while the rest of their tensor is quantized: row-major flat
// indices (r * cols + c) per tensor name. quantize_model() stores them through the scheme's sparse fp16
// outlier policy ("+sparse") when it has one, else in a ProtectedLinear around the scheme: either way they
// come back exactly as fp16 and their bytes count in bits per weight.
// Who chooses them (magnitude, Wanda scores, safety-critical scores) is up to the caller
// (safety/protection.hpp).
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace qsafe {

struct ProtectedWeights {
    std::string method;  // how they were chosen, for reports ("magnitude", "wanda", "safety", ...)
    std::map<std::string, std::vector<std::size_t>> indices;

    const std::vector<std::size_t>* for_tensor(const std::string& tensor) const {
        const auto it = indices.find(tensor);
        return it == indices.end() ? nullptr : &it->second;
    }
    std::size_t total() const {
        std::size_t n = 0;
        for (const auto& [name, ids] : indices) n += ids.size();
        return n;
    }
};

}  // namespace qsafe
