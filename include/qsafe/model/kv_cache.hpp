#pragma once
// Per-sequence key/value cache: for every layer, the rotated keys and the values of every position so far,
// stored position-major ([position][kv_head][head_dim]) so appending a token writes one contiguous row.
#include <cstddef>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/model/config.hpp"

namespace qsafe {

class KvCache {
  public:
    KvCache() = default;
    explicit KvCache(const LlamaConfig& c)
        : n_layers_(c.n_layers), row_(c.n_kv_heads * c.head_dim), max_length_(c.context_length),
          keys_(c.n_layers), values_(c.n_layers) {}

    std::size_t length() const noexcept { return length_; }
    std::size_t max_length() const noexcept { return max_length_; }
    void clear() noexcept { length_ = 0; }
    /// Forgets positions from `n` on (e.g. to reuse a shared prompt prefix).
    void truncate(std::size_t n) noexcept {
        if (n < length_) length_ = n;
    }

    /// Makes room for positions [0, n); throws when n exceeds the model's context length.
    void reserve(std::size_t n) {
        if (n > max_length_)
            throw config_error("sequence of " + std::to_string(n) + " tokens exceeds the context length " + std::to_string(max_length_));
        if (n * row_ <= (keys_.empty() ? 0 : keys_[0].size())) return;
        std::size_t cap = std::max<std::size_t>(n, 2 * (keys_.empty() ? 0 : keys_[0].size() / std::max<std::size_t>(row_, 1)));
        cap = std::min(std::max<std::size_t>(cap, 64), max_length_);
        for (std::size_t l = 0; l < n_layers_; ++l) {
            keys_[l].resize(cap * row_);
            values_[l].resize(cap * row_);
        }
    }
    float* key(std::size_t layer, std::size_t pos) noexcept { return keys_[layer].data() + pos * row_; }
    float* value(std::size_t layer, std::size_t pos) noexcept { return values_[layer].data() + pos * row_; }
    const float* key(std::size_t layer, std::size_t pos) const noexcept { return keys_[layer].data() + pos * row_; }
    const float* value(std::size_t layer, std::size_t pos) const noexcept { return values_[layer].data() + pos * row_; }
    void advance(std::size_t n) noexcept { length_ += n; }

  private:
    std::size_t n_layers_ = 0, row_ = 0, max_length_ = 0, length_ = 0;
    std::vector<std::vector<float>> keys_, values_;
};

}  // namespace qsafe
