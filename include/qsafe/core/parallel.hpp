#pragma once
// The only place in qsafe that speaks OpenMP. Work is split into contiguous, statically scheduled ranges
// (or, for tasks of unequal size, handed out one index at a time); each index is processed by exactly one
// thread with the same code as in a serial run, so results never depend on the thread count (there are no
// cross-thread floating-point reductions).
#include <cstddef>
#include <cstdint>

#include <omp.h>

namespace qsafe {

/// Threads qsafe's parallel loops will use (OMP_NUM_THREADS or set_num_threads()).
inline int num_threads() noexcept { return omp_get_max_threads(); }

inline void set_num_threads(int n) noexcept { omp_set_num_threads(n > 0 ? n : 1); }

/// Calls body(begin, end) on disjoint chunks covering [0, n); chunk boundaries are multiples of `grain`.
/// Runs serially when the range is too small to be worth a fork.
template <class Body>
void parallel_for_ranges(std::size_t n, std::size_t grain, Body&& body) {
    if (grain == 0) grain = 1;
    const std::size_t chunks = (n + grain - 1) / grain;
    const int threads = num_threads();
    if (threads <= 1 || chunks <= 1) {
        if (n > 0) body(std::size_t{0}, n);
        return;
    }
    const auto n_chunks = static_cast<std::int64_t>(chunks);
#pragma omp parallel num_threads(threads)
    {
        const auto t = static_cast<std::int64_t>(omp_get_thread_num());
        const auto nt = static_cast<std::int64_t>(omp_get_num_threads());
        // Static split: thread t owns chunks [t*n/nt, (t+1)*n/nt).
        const std::int64_t first = t * n_chunks / nt;
        const std::int64_t last = (t + 1) * n_chunks / nt;
        if (first < last) {
            const std::size_t begin = static_cast<std::size_t>(first) * grain;
            std::size_t end = static_cast<std::size_t>(last) * grain;
            if (end > n) end = n;
            body(begin, end);
        }
    }
}

/// Calls body(i) for every i in [0, n), in parallel.
template <class Body>
void parallel_for(std::size_t n, Body&& body, std::size_t grain = 1) {
    parallel_for_ranges(n, grain, [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) body(i);
    });
}

/// Calls body(i) for every i in [0, n), in parallel, handing indices out one at a time to whichever thread
/// is free (for tasks of unequal size; put the large ones first). Which thread runs an index never changes
/// what the index computes, so results stay independent of the thread count.
template <class Body>
void parallel_for_dynamic(std::size_t n, Body&& body) {
    const int threads = num_threads();
    if (threads <= 1 || n <= 1) {
        for (std::size_t i = 0; i < n; ++i) body(i);
        return;
    }
    const auto count = static_cast<std::int64_t>(n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (std::int64_t i = 0; i < count; ++i) body(static_cast<std::size_t>(i));
}

}  // namespace qsafe
