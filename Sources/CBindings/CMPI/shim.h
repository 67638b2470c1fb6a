#include <mpi.h>

// Open MPI defines its predefined handles as macros over global symbols, which Swift cannot
// import. These functions hand them to Swift.
static inline MPI_Comm vae_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype vae_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype vae_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype vae_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype vae_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op vae_mpi_sum(void) { return MPI_SUM; }
static inline void *vae_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *vae_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Datatype vae_mpi_int64(void) { return MPI_INT64_T; }
