#include "qsafe/mpi_session.hpp"

#include <cstdlib>

#include "qsafe/core/error.hpp"

#ifdef QSAFE_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C bindings only: the deprecated C++ ones warn under -Wall
#include <mpi.h>
#endif

namespace qsafe_cli {

#ifdef QSAFE_WITH_MPI
MpiSession::MpiSession() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) MPI_Init(nullptr, nullptr);
    int rank = 0, size = 1, local = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;  // the ranks that share this host's memory, hence its cores
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    rank_ = static_cast<std::size_t>(rank);
    size_ = static_cast<std::size_t>(size);
    local_size_ = static_cast<std::size_t>(local);
}
MpiSession::~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}
void MpiSession::barrier() const { MPI_Barrier(MPI_COMM_WORLD); }
void MpiSession::abort(int code) const {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);  // MPI_Abort does not return; this satisfies [[noreturn]] if an implementation does
}
#else
MpiSession::MpiSession() {
    throw qsafe::config_error("--mpi: this qsafe was built without MPI (install libopenmpi-dev and rebuild), or use --shard I/N");
}
MpiSession::~MpiSession() = default;
void MpiSession::barrier() const {}
void MpiSession::abort(int code) const { std::exit(code); }
#endif

}  // namespace qsafe_cli
