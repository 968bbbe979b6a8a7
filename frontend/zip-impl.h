/* Internal: reading one member of a zip archive (a .keras model is a zip holding config.json,
   model.weights.h5 and metadata.json). Stored and deflated members, zip64 sizes and offsets;
   no encryption, no multi-disk archives. */
#ifndef KILN_ZIP_IMPL_H
#define KILN_ZIP_IMPL_H

#include <stddef.h>

#include "kiln/status.h"

/* Reads member `name` of the zip archive at `path` into a malloc'd buffer with a NUL after its
   `*len` bytes. KILN_NOT_FOUND when the archive has no such member (the message lists the
   members), KILN_INVALID_ARGUMENT for a malformed archive, a member larger than `limit` bytes,
   a CRC mismatch or an unsupported method, KILN_IO when the file cannot be read. Every
   message names the file. */
kiln_status kiln_zip_read(const char *path, const char *name, size_t limit, char **data,
                          size_t *len);

#endif
