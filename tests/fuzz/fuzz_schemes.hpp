#pragma once
// The scheme names fuzz_quantized_layers picks from by its second input byte; make_seed_corpus uses the same
// list, so a seed's byte names the scheme its bytes were serialized with.
#include <string>
#include <vector>

#include "qsafe/registry/builtin_schemes.hpp"
#include "qsafe/registry/scheme_registry.hpp"

namespace qsafe_fuzz {

inline const std::vector<std::string>& scheme_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> n;
        for (const auto& s : qsafe::list_schemes()) n.push_back(s.name);
        for (const char* p : {"int4-g32-sym+protect1%", "vq2-d4+protect0.2%", "int4-g128-asym+ocol+protect0.5%",
                              "nf4-g64+protect2%", "int2-g32-asym+sparse+protect1%"})
            n.emplace_back(p);
        return n;
    }();
    return names;
}

}  // namespace qsafe_fuzz
