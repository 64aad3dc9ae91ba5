#pragma once
// `qsafe eval --mpi`: one process per shard started by mpirun (or srun), rank = shard. MPI is used only to
// learn the rank and the world, and to wait for every rank before rank 0 merges: the shards share nothing
// but the output folder. Built only when CMake finds MPI (Debian: libopenmpi-dev); otherwise --mpi says so.
#include <cstddef>

namespace qsafe_cli {

class MpiSession {
  public:
    /// Initializes MPI; throws config_error when qsafe was built without it.
    MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;
    ~MpiSession();  // finalizes

    std::size_t rank() const noexcept { return rank_; }
    std::size_t size() const noexcept { return size_; }
    /// Ranks on this host (they share its cores).
    std::size_t local_size() const noexcept { return local_size_; }
    /// Returns when every rank has called it.
    void barrier() const;
    /// Ends every rank of the job (after an error on this one, so that none waits forever at the barrier).
    [[noreturn]] void abort(int code) const;

  private:
    std::size_t rank_ = 0, size_ = 1, local_size_ = 1;
};

}  // namespace qsafe_cli
