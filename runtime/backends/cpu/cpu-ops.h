/* Internal: cpu backend op implementations, one file per op family. */
#ifndef KILN_CPU_OPS_H
#define KILN_CPU_OPS_H

#include "../../ops-impl.h"

/* kiln_cpu_<name> for every op in ops.def: the reference every other backend is checked
   against and the end of every fallback chain, so it has them all. */
#define X(e, family, name, wmask) kiln_status kiln_cpu_##name(kiln_backend_t be, kiln_tensor *dst);
#include "kiln/ops.def"
#undef X

#endif
