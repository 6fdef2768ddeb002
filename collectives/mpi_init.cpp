#include "collectives/mpi_init.hpp"

#include <mpi.h>

namespace perigee::collectives {

int init_mpi(int* argc, char*** argv) {
  int provided = MPI_THREAD_SINGLE;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  return provided;
}

}  // namespace perigee::collectives
