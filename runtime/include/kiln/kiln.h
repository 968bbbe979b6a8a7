/* kiln: train convolutional networks on any OpenCL device. */
#ifndef KILN_H
#define KILN_H

#include "kiln/status.h"
#include "kiln/log.h"
#include "kiln/tensor.h"
#include "kiln/backend.h"
#include "kiln/ops.h"

#define KILN_VERSION_MAJOR  0
#define KILN_VERSION_MINOR  1
#define KILN_VERSION_PATCH  0
#define KILN_VERSION_STRING "0.1.0"

#endif
