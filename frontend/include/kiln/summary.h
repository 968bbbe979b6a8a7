/* The model summary table (`kiln summary`, the training report): one row per node (name, op,
   output shape, parameters, inputs, a note for pipeline / training-only / output nodes) and
   the totals, as display text, so every front end shows the same numbers formatted one way. */
#ifndef KILN_SUMMARY_H
#define KILN_SUMMARY_H

#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    KILN_SUMMARY_NODE,
    KILN_SUMMARY_OP,
    KILN_SUMMARY_SHAPE,
    KILN_SUMMARY_PARAMS,
    KILN_SUMMARY_INPUTS,
    KILN_SUMMARY_COLS
};

typedef struct kiln_summary_row {
    char cell[KILN_SUMMARY_COLS][256]; /* "c1", "conv2d", "(N, 28, 28, 32)", "320", "image" */
    const char *note;                  /* "", "[output]", "[training only]", "[data pipeline]"... */
} kiln_summary_row;

/* Label / value lines: "Total parameters" / "18,485,770 (70.5 MiB as f32)". */
enum { KILN_SUMMARY_TOTALS = 3 };

typedef struct kiln_summary {
    const char *header[KILN_SUMMARY_COLS]; /* column titles */
    kiln_summary_row *rows;
    int nrows;
    const char *total_label[KILN_SUMMARY_TOTALS];
    char total_value[KILN_SUMMARY_TOTALS][160];
} kiln_summary;

/* The table of a finalized model (kiln_model_finalize). Free with kiln_summary_free. */
kiln_status kiln_summary_build(kiln_model_t m, kiln_summary *out);
void kiln_summary_free(kiln_summary *s);

#ifdef __cplusplus
}
#endif
#endif
