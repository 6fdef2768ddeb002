// MPI start-up for every Perigee program: MPI_Init_thread asking for MPI_THREAD_MULTIPLE, so a
// communicator may run collectives on a worker thread while the caller computes (the emulated
// links' overlapped all-reduces). Open MPI grants it with its shared-memory and TCP transports; a
// library that grants less still works, without that overlap (EmulatedLinkCommunicator::overlaps).
#pragma once

namespace perigee::collectives {

// Initialises MPI; returns the thread level MPI provided (MPI_THREAD_SINGLE ... MULTIPLE), and says
// so on rank 0's stderr when it is less than MULTIPLE. A failed MPI_Init_thread exits the program
// with status 1 and a message: nothing can run without MPI.
int init_mpi(int* argc, char*** argv);

}  // namespace perigee::collectives
