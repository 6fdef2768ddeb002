#include "collectives/mpi_init.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

namespace perigee::collectives {

int init_mpi(int* argc, char*** argv) {
  int provided = MPI_THREAD_SINGLE;
  const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  if (rc != MPI_SUCCESS) {
    // MPI is not up, so MPI_Error_string may not work either: report the code, which mpi.h names.
    std::fprintf(stderr,
                 "perigee: MPI_Init_thread failed with MPI error code %d; check the launcher "
                 "(mpirun) and the MPI installation\n",
                 rc);
    std::exit(1);
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
      std::fprintf(stderr,
                   "perigee: MPI granted thread level %d, not MPI_THREAD_MULTIPLE (%d): the emulated "
                   "links run their all-reduces without overlap\n",
                   provided, MPI_THREAD_MULTIPLE);
    }
  }
  return provided;
}

}  // namespace perigee::collectives
